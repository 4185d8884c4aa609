package io.trellis2lora.core.api;

import io.trellis2lora.core.net.AddressPolicy;
import java.time.Duration;
import java.util.Arrays;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.function.Function;

/**
 * Deployment settings, read from the environment of each function (the infrastructure sets them).
 *
 * @param apiBaseUrl  base of the status/result/cancel URLs handed back; null to derive it from the API Gateway event
 * @param dataBuckets the buckets an {@code s3://} data_url may name (TRELLIS2_DATA_BUCKETS, comma-separated; the
 *                    infrastructure sets the uploads bucket). Never the requests bucket unless listed: it holds every
 *                    other request's inputs and adapters, which the functions' roles can read.
 */
public record PlatformConfig(String requestsBucket, String stateMachineArn, String apiBaseUrl, Duration presignTtl,
        AddressPolicy addressPolicy, Set<String> dataBuckets) {

    public PlatformConfig {
        dataBuckets = Set.copyOf(dataBuckets);
    }

    public static PlatformConfig fromEnvironment(Function<String, String> env) {
        String ttl = env.apply("TRELLIS2_PRESIGN_SECONDS");
        return new PlatformConfig(
                required(env, "TRELLIS2_REQUESTS_BUCKET"),
                env.apply("TRELLIS2_STATE_MACHINE_ARN"),
                blankToNull(env.apply("TRELLIS2_API_BASE_URL")),
                Duration.ofSeconds(ttl == null || ttl.isBlank() ? 3600 : Long.parseLong(ttl.trim())),
                AddressPolicy.fromEnvironment(env),
                buckets(env.apply("TRELLIS2_DATA_BUCKETS")));
    }

    /** "a, b" -> {a, b}; unset or blank -> none (an s3:// data_url is then refused). */
    public static Set<String> buckets(String list) {
        if (list == null || list.isBlank()) {
            return Set.of();
        }
        return Arrays.stream(list.split(",")).map(String::trim).filter(b -> !b.isEmpty())
                .collect(Collectors.toUnmodifiableSet());
    }

    /** arn:...:stateMachine:NAME + id -> arn:...:execution:NAME:id (executions are named by request id). */
    public String executionArn(String requestId) {
        if (stateMachineArn == null || !stateMachineArn.contains(":stateMachine:")) {
            throw new IllegalStateException("TRELLIS2_STATE_MACHINE_ARN is not set to a state machine ARN");
        }
        return stateMachineArn.replace(":stateMachine:", ":execution:") + ":" + requestId;
    }

    private static String required(Function<String, String> env, String name) {
        String v = env.apply(name);
        if (v == null || v.isBlank()) {
            throw new IllegalStateException(name + " is not set");
        }
        return v.trim();
    }

    private static String blankToNull(String v) {
        return v == null || v.isBlank() ? null : v.trim().replaceAll("/+$", "");
    }
}
