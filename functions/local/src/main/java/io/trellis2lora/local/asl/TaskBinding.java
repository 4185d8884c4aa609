package io.trellis2lora.local.asl;

import com.fasterxml.jackson.databind.JsonNode;

/** Answers Task states whose Resource it recognises, the way the AWS service integration would. */
public interface TaskBinding {
    boolean handles(String resource);

    /**
     * Runs the task. Must stop promptly (killing any process it started) when the thread is interrupted: that is how
     * timeouts and {@link Execution#stop} reach it.
     */
    JsonNode invoke(TaskCall call) throws AslError, InterruptedException;

    /** One Task state's invocation. {@code label} names the Map iteration ("" at the top level). */
    record TaskCall(String resource, JsonNode parameters, String state, String label, Execution execution) {
    }
}
