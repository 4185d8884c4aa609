package io.trellis2lora.orchestration;

import java.util.function.Function;

/**
 * How Prepare cuts preprocessing into shards: {@code ceil(objects / objectsPerShard)} of them, at most
 * {@code maxShards} and never more than the objects (a shard is never empty); 1 is today's single preprocess job.
 *
 * <p>Default 100 objects a shard: a GPU instance takes ~30 s an object at 1024 (16 Cycles views, the 1024 dual grid,
 * the encoders), so a shard runs ~50 minutes, long beside the ~5-10 minutes an instance needs to start, pull the image
 * and load the models (on CPU a 1024² view alone is ~13 s, ~3.5 min an object, hence a GPU for preprocessing). Default
 * at most 16 shards: 16 one-GPU jobs of 8 vCPUs are 128, within the stack's default MaxVCpus (192) with room for
 * training; more would only queue.
 *
 * @param objectsPerShard TRELLIS2_OBJECTS_PER_SHARD (the prepare function's environment)
 * @param maxShards       TRELLIS2_MAX_PREPROCESS_SHARDS; 1 turns sharding off
 */
public record Sharding(int objectsPerShard, int maxShards) {
    public static final int DEFAULT_OBJECTS_PER_SHARD = 100;
    public static final int DEFAULT_MAX_SHARDS = 16;
    /** AWS Batch's largest array job. */
    public static final int MAX_SHARDS = 10_000;
    /** One preprocess job whatever the size (the local runner's default; tests). */
    public static final Sharding OFF = new Sharding(DEFAULT_OBJECTS_PER_SHARD, 1);

    public Sharding {
        if (objectsPerShard < 1) {
            throw new IllegalStateException("objects per shard must be at least 1, got " + objectsPerShard);
        }
        if (maxShards < 1 || maxShards > MAX_SHARDS) {
            throw new IllegalStateException("the shard count must be between 1 and " + MAX_SHARDS + ", got "
                    + maxShards);
        }
    }

    /** Exactly {@code count} shards (fewer only when there are fewer objects): the local runner's --preprocess-shards. */
    public static Sharding exactly(int count) {
        return new Sharding(1, count);
    }

    public static Sharding fromEnvironment(Function<String, String> env) {
        return new Sharding(setting(env, "TRELLIS2_OBJECTS_PER_SHARD", DEFAULT_OBJECTS_PER_SHARD),
                setting(env, "TRELLIS2_MAX_PREPROCESS_SHARDS", DEFAULT_MAX_SHARDS));
    }

    /** The shard count for {@code objects} objects: 1 means one plain preprocess job. */
    public int shards(int objects) {
        long wanted = (Math.max(1, objects) + (long) objectsPerShard - 1) / objectsPerShard;
        return (int) Math.max(1, Math.min(Math.min(wanted, maxShards), objects));
    }

    private static int setting(Function<String, String> env, String name, int fallback) {
        String v = env.apply(name);
        if (v == null || v.isBlank()) {
            return fallback;
        }
        try {
            return Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw new IllegalStateException(name + " must be a whole number, got '" + v + "'");
        }
    }
}
