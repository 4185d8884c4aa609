package io.trellis2lora.functions.submit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.Services;
import io.trellis2lora.core.api.SubmitOperation;
import io.trellis2lora.core.testing.Moto;
import io.trellis2lora.core.testing.TestHttpsServer;
import io.trellis2lora.core.testing.TestServices;
import io.trellis2lora.core.testing.TestZips;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.services.sfn.model.ExecutionStatus;

@ExtendWith(Moto.class)
class SubmitFunctionTest {
    static byte[] real20;
    /** For tests about the API rather than the archive: three tiny objects, quick to move around. */
    static byte[] small;
    static TestHttpsServer server;
    Services services;
    SubmitFunction fn;

    @BeforeAll
    static void assets(@TempDir Path tmp) throws Exception {
        real20 = Files.readAllBytes(TestZips.realAssetsZip(tmp.resolve("r.zip"), 20));
        small = TestZips.forge(List.of(TestZips.Forged.file("a/chair.glb", "glTF"),
                TestZips.Forged.file("a/table.obj", "v 0 0 0"), TestZips.Forged.file("b/lamp.ply", "ply")), false);
        server = new TestHttpsServer();
    }

    @AfterAll
    static void stop() {
        server.close();
    }

    @BeforeEach
    void setUp() {
        services = TestServices.create(TestServices.RUNNING_MACHINE, true);
        fn = new SubmitFunction(new SubmitOperation(services));
    }

    String bucket() {
        return services.config().requestsBucket();
    }

    String upload(String key, byte[] data) {
        services.s3().putObject(b -> b.bucket(bucket()).key(key), RequestBody.fromBytes(data));
        return "s3://" + bucket() + "/" + key;
    }

    Map<String, Object> submit(String body, Map<String, String> headers) {
        return fn.handleRequest(TestServices.event("POST", body, headers, null), null);
    }

    static JsonNode body(Map<String, Object> resp) throws Exception {
        return Json.MAPPER.readTree((String) resp.get("body"));
    }

    List<String> executionNames() {
        return services.sfn().listExecutions(b -> b.stateMachineArn(services.config().stateMachineArn()))
                .executions().stream().map(e -> e.name()).toList();
    }

    @Test
    void submitStoresTheRequestStartsTheExecutionAndAnswersWithUrlsAndEstimate() throws Exception {
        String url = upload("uploads/assets.zip", real20);
        var resp = submit("{\"data_url\":\"" + url + "\",\"denoisers\":[\"sparse_structure\",\"geometry\","
                + "\"texture\"],\"training_steps\":2000,\"rank\":32,\"resolution\":512}", Map.of());
        assertEquals(202, resp.get("statusCode"), (String) resp.get("body"));
        JsonNode b = body(resp);
        String id = b.get("request_id").asText();
        assertEquals(TestServices.BASE_URL + "/requests/" + id + "/status", b.get("status_url").asText());
        assertEquals(TestServices.BASE_URL + "/requests/" + id, b.get("response_url").asText());
        assertEquals(TestServices.BASE_URL + "/requests/" + id + "/cancel", b.get("cancel_url").asText());
        assertEquals("31.93", b.at("/estimate/total").asText());
        assertEquals(3, b.at("/estimate/stages").size());

        JsonNode stored = Json.MAPPER.readTree(services.s3().getObjectAsBytes(g -> g.bucket(bucket())
                .key("requests/" + id + "/request.json")).asUtf8String());
        assertEquals(url, stored.get("input_uri").asText());
        assertEquals(20, stored.at("/inspection/objects").asInt());
        assertEquals(2000, stored.at("/request/training_steps").asInt());
        assertEquals("31.93", stored.at("/estimate/total").asText());

        var exec = services.sfn().describeExecution(d -> d.executionArn(services.config().executionArn(id)));
        assertEquals(ExecutionStatus.RUNNING, exec.status());
        JsonNode input = Json.MAPPER.readTree(exec.input());
        assertEquals(id, input.get("request_id").asText());
        assertEquals("requests/" + id + "/request.json", input.get("request_key").asText());
    }

    @Test
    void idempotencyKeyMakesARepeatReturnTheFirstRequest() throws Exception {
        String url = upload("uploads/a.zip", small);
        String body = "{\"data_url\":\"" + url + "\"}";
        var first = body(submit(body, Map.of("Idempotency-Key", "order-42")));
        var again = submit(body, Map.of("idempotency-key", "order-42"));
        assertEquals(200, again.get("statusCode"));
        assertEquals(first.get("request_id").asText(), body(again).get("request_id").asText());
        assertEquals(first.get("estimate"), body(again).get("estimate"));
        var other = body(submit(body, Map.of("Idempotency-Key", "order-43")));
        assertNotEquals(first.get("request_id").asText(), other.get("request_id").asText());
        var noKey = body(submit(body, Map.of()));
        assertEquals(3, executionNames().size());
        assertTrue(executionNames().contains(noKey.get("request_id").asText()));
    }

    @Test
    void invalidRequestsAreRefusedWithEveryProblemAndStartNothing() throws Exception {
        var resp = submit("{\"denoisers\":[\"colour\"],\"rank\":3,\"learning_rate\":\"fast\"}", Map.of());
        assertEquals(400, resp.get("statusCode"));
        assertEquals(4, body(resp).get("problems").size(), (String) resp.get("body"));
        for (String bad : new String[] {null, "", "[1,2]", "{\"data_url\":", "\"x\"", "{\"data_url\": NaN}"}) {
            var r = submit(bad, Map.of());
            assertEquals(400, r.get("statusCode"), bad + " -> " + r.get("body"));
        }
        assertEquals(List.of(), executionNames());
    }

    @Test
    void unsafeArchiveIsRefusedNamingTheEntry() throws Exception {
        String url = upload("uploads/evil.zip", TestZips.forge(List.of(TestZips.Forged.file("a.glb", "x"),
                TestZips.Forged.file("../evil.glb", "x")), false));
        var resp = submit("{\"data_url\":\"" + url + "\"}", Map.of());
        assertEquals(400, resp.get("statusCode"));
        assertTrue(body(resp).get("error").asText().contains("'../evil.glb'"), (String) resp.get("body"));
        var missing = submit("{\"data_url\":\"s3://" + bucket() + "/nope.zip\"}", Map.of());
        assertEquals(400, missing.get("statusCode"));
        assertEquals(List.of(), executionNames());
    }

    @Test
    void httpsArchiveFromAServerIgnoringRangeIsStagedUnderTheRequest() throws Exception {
        String url = server.serveWhole("/whole-" + bucket() + ".zip", small);
        var resp = submit("{\"data_url\":\"" + url + "\"}", Map.of());
        assertEquals(202, resp.get("statusCode"), (String) resp.get("body"));
        String id = body(resp).get("request_id").asText();
        JsonNode stored = Json.MAPPER.readTree(services.s3().getObjectAsBytes(g -> g.bucket(bucket())
                .key("requests/" + id + "/request.json")).asUtf8String());
        assertEquals("s3://" + bucket() + "/requests/" + id + "/input.zip", stored.get("input_uri").asText());
        assertEquals(url, stored.at("/request/data_url").asText());
    }

    @Test
    void base64BodiesAndHttpApiEventsWork() throws Exception {
        String url = upload("uploads/b.zip", small);
        String body = "{\"data_url\":\"" + url + "\"}";
        Map<String, Object> event = TestServices.event("POST",
                Base64.getEncoder().encodeToString(body.getBytes(StandardCharsets.UTF_8)), Map.of(), null);
        event.put("isBase64Encoded", true);
        assertEquals(202, fn.handleRequest(event, null).get("statusCode"));
        Map<String, Object> broken = TestServices.event("POST", "not base64 !!", Map.of(), null);
        broken.put("isBase64Encoded", true);
        assertEquals(400, fn.handleRequest(broken, null).get("statusCode"));
        // HTTP API payload 2.0 carries the method under requestContext.http and no stage prefix for $default.
        Map<String, Object> v2 = new java.util.HashMap<>(Map.of("version", "2.0", "body", body,
                "headers", Map.of("host", "api.example.org"),
                "requestContext", Map.of("http", Map.of("method", "POST"), "domainName", "api.example.org",
                        "stage", "$default")));
        var r = new SubmitFunction(new SubmitOperation(new Services(
                new io.trellis2lora.core.api.PlatformConfig(bucket(), services.config().stateMachineArn(), null,
                        services.config().presignTtl(), services.config().addressPolicy()),
                services.s3(), services.presigner(), services.sfn(), services.http()))).handleRequest(v2, null);
        assertEquals(202, r.get("statusCode"), (String) r.get("body"));
        assertTrue(body(r).get("status_url").asText().startsWith("https://api.example.org/requests/"),
                (String) r.get("body"));
    }
}
