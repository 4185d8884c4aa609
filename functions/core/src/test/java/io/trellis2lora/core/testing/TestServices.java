package io.trellis2lora.core.testing;

import io.trellis2lora.core.api.PlatformConfig;
import io.trellis2lora.core.api.Services;
import io.trellis2lora.core.net.AddressPolicy;
import io.trellis2lora.core.net.SafeHttp;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;

/** Services pointed at moto: a fresh requests bucket and a state machine that really runs there. */
public final class TestServices {
    public static final String BASE_URL = "https://api.example.test/v1";

    /** Prepare (Pass) then Train (Wait 10 min): executions stay RUNNING in Train. */
    public static final String RUNNING_MACHINE = "{\"StartAt\":\"Prepare\",\"States\":{"
            + "\"Prepare\":{\"Type\":\"Pass\",\"Next\":\"Train\"},"
            + "\"Train\":{\"Type\":\"Wait\",\"Seconds\":600,\"End\":true}}}";
    public static final String SUCCEEDING_MACHINE = "{\"StartAt\":\"Prepare\",\"States\":{"
            + "\"Prepare\":{\"Type\":\"Pass\",\"End\":true}}}";
    public static final String FAILING_MACHINE = "{\"StartAt\":\"Finalize\",\"States\":{"
            + "\"Finalize\":{\"Type\":\"Fail\",\"Error\":\"AllStagesFailed\",\"Cause\":\"every stage failed\"}}}";

    private TestServices() {
    }

    /** @param stateMachine ASL definition; executions of it are what submit starts */
    public static Services create(String stateMachine) {
        return create(stateMachine, false);
    }

    /** @param httpsArchives true when the test serves archives from a {@link TestHttpsServer}, which it trusts */
    public static Services create(String stateMachine, boolean httpsArchives) {
        try {
            var s3 = Moto.s3();
            var sfn = Moto.sfn();
            String bucket = Moto.newBucket(s3);
            String arn = Moto.newStateMachine(sfn, stateMachine);
            // Tests fetch https archives from a server on loopback, which only this setting lets through; their
            // s3:// archives sit in the one bucket, which is therefore a data bucket too.
            var config = new PlatformConfig(bucket, arn, BASE_URL, Duration.ofMinutes(10),
                    new AddressPolicy(true, false), java.util.Set.of(bucket));
            return new Services(config, s3, Moto.presigner(), sfn,
                    new SafeHttp(config.addressPolicy(), httpsArchives ? TestHttpsServer.clientContext() : null));
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    /** An API Gateway (REST, payload 1.0) proxy event, as the Lambda receives it. */
    public static Map<String, Object> event(String method, String body, Map<String, String> headers,
            Map<String, String> pathParameters) {
        Map<String, Object> e = new HashMap<>();
        e.put("httpMethod", method);
        e.put("resource", "/requests");
        e.put("headers", headers);
        e.put("pathParameters", pathParameters);
        e.put("body", body);
        e.put("isBase64Encoded", false);
        e.put("requestContext", Map.of("domainName", "abc123.execute-api.us-east-1.amazonaws.com", "stage", "prod"));
        return e;
    }

    public static Map<String, Object> get(String requestId) {
        return event("GET", null, Map.of(), requestId == null ? null : Map.of("request_id", requestId));
    }
}
