/**
 * What a value becomes on the wire: JSON turns Dates into ISO strings. Every admin operation's
 * result is handed to its caller in this form, over the admin API and under `--local` alike, so
 * the CLI renders one shape whichever way it ran the command.
 */
export type Wire<T> = T extends Date
  ? string
  : T extends readonly (infer U)[]
    ? Wire<U>[]
    : T extends object
      ? { [K in keyof T]: Wire<T[K]> }
      : T;

/** The JSON round trip the admin API applies, done in process (`--local`). */
export function toWire<T>(value: T): Wire<T> {
  return (value === undefined ? value : JSON.parse(JSON.stringify(value))) as Wire<T>;
}
