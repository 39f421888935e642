"use client";

/**
 * `TelephonyErrorBoundary`: a telephony component that throws while rendering shows the fallback
 * instead of taking the page down, and gets another try when telephony comes back.
 */

import { Component, type ErrorInfo, type ReactNode } from "react";

import { useRecoveries } from "./provider.js";

export interface FallbackProps {
  error: Error;
  /** Try the children again now. */
  reset(): void;
}

export interface TelephonyErrorBoundaryProps {
  fallback: ReactNode | ((props: FallbackProps) => ReactNode);
  /** For logging: called once per caught error. */
  onError?(error: Error, info: ErrorInfo): void;
  children?: ReactNode;
}

export function TelephonyErrorBoundary(props: TelephonyErrorBoundaryProps) {
  return <Boundary {...props} resetKey={useRecoveries()} />;
}

interface BoundaryState {
  error: Error | null;
}

class Boundary extends Component<TelephonyErrorBoundaryProps & { resetKey: number }, BoundaryState> {
  override state: BoundaryState = { error: null };

  static getDerivedStateFromError(error: unknown): BoundaryState {
    return { error: error instanceof Error ? error : new Error(String(error)) };
  }

  override componentDidCatch(error: Error, info: ErrorInfo): void {
    this.props.onError?.(error, info);
  }

  override componentDidUpdate(previous: { resetKey: number }): void {
    if (this.state.error && previous.resetKey !== this.props.resetKey) this.setState({ error: null });
  }

  reset = (): void => this.setState({ error: null });

  override render(): ReactNode {
    const { error } = this.state;
    if (!error) return this.props.children;
    const { fallback } = this.props;
    return typeof fallback === "function" ? fallback({ error, reset: this.reset }) : fallback;
  }
}
