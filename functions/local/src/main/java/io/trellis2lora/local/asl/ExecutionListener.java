package io.trellis2lora.local.asl;

/** Progress of an execution; {@code label} names the Map iteration ("" at the top level). Calls may come from any thread. */
public interface ExecutionListener {
    default void stateEntered(String label, String state) {
    }

    default void stateSucceeded(String label, String state) {
    }

    default void retrying(String label, String state, AslError error, long delayMillis) {
    }

    default void caught(String label, String state, AslError error, String next) {
    }

    /** A line of output from a process a task runs. */
    default void output(String label, String state, String line) {
    }
}
