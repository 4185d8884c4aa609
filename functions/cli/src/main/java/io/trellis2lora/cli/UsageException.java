package io.trellis2lora.cli;

/** The command line itself is wrong: the message, then the command's usage, exit 2. */
final class UsageException extends RuntimeException {
    UsageException(String message) {
        super(message);
    }
}
