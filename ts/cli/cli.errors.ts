// Exit codes and the two kinds of failure the CLI reports itself (beside the library's IpcError).

/** The command did what was asked. */
export const EXIT_OK = 0;
/** The command ran and failed (the error's code and message are printed on stderr). */
export const EXIT_FAILURE = 1;
/** The command line was wrong: unknown command or flag, a missing or malformed argument. */
export const EXIT_USAGE = 2;

/** Bad usage: printed with a pointer to the command's --help, exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * A failure found by the CLI rather than the library (an unreadable file, a library without a
 * feature): exit 1, printed like an IpcError with its own code.
 */
export class CliFailure extends Error {
  constructor(
    public readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}
