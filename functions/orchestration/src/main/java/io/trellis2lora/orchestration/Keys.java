package io.trellis2lora.orchestration;

import io.trellis2lora.core.storage.StorageLayout;

/** Keys the orchestration adds to core's StorageLayout. */
public final class Keys {
    private Keys() {
    }

    /** The preprocess job's report ({"error": ...} on failure). */
    public static String preprocessReport(String requestId) {
        return StorageLayout.requestPrefix(requestId) + "preprocess.json";
    }

    /** Prepare's record of the inspected input (size, sha256, entries, objects), which the jobs check theirs against. */
    public static String inputRecord(String requestId) {
        return StorageLayout.requestPrefix(requestId) + "input.json";
    }

    /** The final charge (succeeded stages only); result.json keeps the contract's three fields. */
    public static String charge(String requestId) {
        return StorageLayout.requestPrefix(requestId) + "charge.json";
    }

    /** Written by Finalize once the dataset beside it is complete: only then does Prepare reuse it. */
    public static String datasetRecord(String datasetKey) {
        String zip = StorageLayout.dataset(datasetKey);
        return zip.substring(0, zip.lastIndexOf('/') + 1) + "dataset.json";
    }

    /** What the worker puts in place of this in a shard's output and report: the shard's index (its array index). */
    public static final String SHARD = "{shard}";

    /** Sharded preprocessing's plan: {"objects": [{"file": ...}, ...]}; shard I of N takes the I-th block. */
    public static String shardPlan(String requestId) {
        return StorageLayout.requestPrefix(requestId) + "shard-plan.json";
    }

    /** A shard's dataset zip, with {@link #SHARD} for its index; the merge reads them all. */
    public static String shardOutput(String requestId) {
        return StorageLayout.requestPrefix(requestId) + "shards/" + SHARD + "/preprocessed.zip";
    }

    /** A shard's preprocess report, with {@link #SHARD} for its index. */
    public static String shardReport(String requestId) {
        return StorageLayout.requestPrefix(requestId) + "shards/" + SHARD + "/report.json";
    }
}
