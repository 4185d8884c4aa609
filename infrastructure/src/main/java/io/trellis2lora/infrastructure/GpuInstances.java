package io.trellis2lora.infrastructure;

import java.util.List;

/**
 * The EC2 instance types the Batch compute environments may launch: every one has at least 48 GB of memory on each
 * GPU (the training of the full-size base needs it) and room for one job of either kind.
 */
public final class GpuInstances {
    /** One instance type and what Batch can hand a job on it. */
    public record Type(String name, int vcpus, int memoryGib, int gpus, int gpuMemoryGib, String gpu) {
    }

    /** Per-GPU memory never below this, in GB. */
    public static final int MIN_GPU_MEMORY_GIB = 48;

    public static final List<Type> TYPES = List.of(
            new Type("g6e.2xlarge", 8, 64, 1, 48, "NVIDIA L40S"),
            new Type("g6e.4xlarge", 16, 128, 1, 48, "NVIDIA L40S"),
            new Type("g6e.8xlarge", 32, 256, 1, 48, "NVIDIA L40S"),
            new Type("g6e.12xlarge", 48, 384, 4, 48, "NVIDIA L40S"),
            new Type("g6e.16xlarge", 64, 512, 1, 48, "NVIDIA L40S"),
            new Type("g6e.24xlarge", 96, 768, 4, 48, "NVIDIA L40S"),
            new Type("p4de.24xlarge", 96, 1152, 8, 80, "NVIDIA A100 80GB"),
            new Type("p5.48xlarge", 192, 2048, 8, 80, "NVIDIA H100"));

    private GpuInstances() {
    }

    public static List<String> names() {
        return TYPES.stream().map(Type::name).toList();
    }

    /** The types a comma-separated list names (the CDK context gpuInstanceTypes); null or blank: all of them. */
    public static List<Type> select(String list) {
        if (list == null || list.isBlank()) {
            return TYPES;
        }
        List<Type> out = new java.util.ArrayList<>();
        for (String name : list.split(",")) {
            Type t = TYPES.stream().filter(x -> x.name().equals(name.trim())).findFirst()
                    .orElseThrow(() -> new IllegalArgumentException("gpuInstanceTypes: '" + name.trim()
                            + "' is not one of " + names() + " (each has at least " + MIN_GPU_MEMORY_GIB
                            + " GB on every GPU)"));
            out.add(t);
        }
        return List.copyOf(out);
    }

    /**
     * The GPUs one training job asks for (the CDK context trainGpus; default 1): one of the chosen types must hold
     * that many GPUs with their share of vCPUs and memory, or the job would wait for an instance that never comes.
     */
    public static int trainGpus(String value, List<Type> types) {
        int gpus;
        try {
            gpus = value == null || value.isBlank() ? 1 : Integer.parseInt(value.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("trainGpus must be a whole number, got '" + value + "'");
        }
        int n = gpus;
        boolean fits = n >= 1 && types.stream().anyMatch(t -> t.gpus() >= n && t.vcpus() >= Trellis2Stack.JOB_VCPUS * n
                && t.memoryGib() >= Trellis2Stack.JOB_MEMORY_GIB * n + 4);
        if (!fits) {
            throw new IllegalArgumentException("trainGpus " + value + ": no instance type of " + types.stream()
                    .map(Type::name).toList() + " holds a training job on that many GPUs");
        }
        return gpus;
    }
}
