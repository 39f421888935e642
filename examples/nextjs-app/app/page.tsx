import { Counter, Phone } from "./phone";

export default function Home() {
  return (
    <main>
      <h1>Acme Support</h1>
      <Phone />
      <h2>Meanwhile</h2>
      <Counter />
    </main>
  );
}
