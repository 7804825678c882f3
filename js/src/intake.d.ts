import { Message, Unknown } from "./messages.js";
import { StateVector } from "./statevector.js";
import { Update } from "./updates.js";

export interface Violation {
  reason: string;
  detail: string;
}

export interface Intake {
  violations: Violation[];
  updates: Map<string, Update[]>;
  states: Map<string, StateVector>;
}

export interface IntakeOptions {
  maxMessageItems?: number;
  maxValueBytes?: number;
  stateOf?: (name: string) => Map<number, number> | null;
}

/** True when `name` is a store name (1 to 1,024 UTF-8 bytes of valid Unicode). */
export function isStoreName(name: string): boolean;
/** Check a message as the reference engine does before it applies anything. */
export function intake(message: Message | Unknown, options?: IntakeOptions): Intake;
