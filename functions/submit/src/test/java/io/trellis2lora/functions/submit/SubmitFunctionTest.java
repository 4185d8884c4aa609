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

    Map<String, Object> submitAs(String apiKeyId, String body, String key) {
        Map<String, Object> event = TestServices.event("POST", body, Map.of("Idempotency-Key", key), null);
        event.put("requestContext", Map.of("domainName", "abc123.execute-api.us-east-1.amazonaws.com",
                "stage", "prod", "identity", Map.of("apiKeyId", apiKeyId)));
        return fn.handleRequest(event, null);
    }

    @Test
    void idempotencyKeyIsTheCallersAndHoldsItsBody() throws Exception {
        String url = upload("uploads/k.zip", small);
        String body = "{\"data_url\":\"" + url + "\",\"learning_rate\":0.0001}";
        var alice = submitAs("key-alice", body, "order-1");
        assertEquals(202, alice.get("statusCode"), (String) alice.get("body"));
        // The same body spelt differently is the same request.
        var again = submitAs("key-alice", "{\"learning_rate\": 1e-4, \"data_url\": \"" + url + "\"}", "order-1");
        assertEquals(200, again.get("statusCode"), (String) again.get("body"));
        assertEquals(body(alice).get("request_id"), body(again).get("request_id"));
        // Another body under the same key is refused, and changes nothing.
        var changed = submitAs("key-alice", "{\"data_url\":\"" + url + "\",\"training_steps\":5000}", "order-1");
        assertEquals(422, changed.get("statusCode"), (String) changed.get("body"));
        assertEquals("this Idempotency-Key was already used with another request body; send a new key for a new "
                + "request", body(changed).get("error").asText());
        String id = body(alice).get("request_id").asText();
        JsonNode stored = Json.MAPPER.readTree(services.s3().getObjectAsBytes(g -> g.bucket(bucket())
                .key("requests/" + id + "/request.json")).asUtf8String());
        assertEquals(1000, stored.at("/request/training_steps").asInt());
        // Another caller's same key is its own request: it neither sees nor is refused by Alice's.
        var bob = submitAs("key-bob", "{\"data_url\":\"" + url + "\",\"training_steps\":5000}", "order-1");
        assertEquals(202, bob.get("statusCode"), (String) bob.get("body"));
        assertNotEquals(id, body(bob).get("request_id").asText());
        assertEquals(2, executionNames().size());
    }

    @Test
    void twoFirstUsesOfAKeyAtOnceMakeOneRequest() throws Exception {
        String url = upload("uploads/race.zip", small);
        String one = "{\"data_url\":\"" + url + "\"}";
        String other = "{\"data_url\":\"" + url + "\",\"rank\":64}";
        for (String[] bodies : new String[][] {{one, other}, {one, one}}) {
            String key = "race-" + bodies[1].length();
            var pool = java.util.concurrent.Executors.newFixedThreadPool(2);
            var a = pool.submit(() -> submitAs("key-race", bodies[0], key));
            var b = pool.submit(() -> submitAs("key-race", bodies[1], key));
            List<Integer> codes = new java.util.ArrayList<>(List.of((Integer) a.get().get("statusCode"),
                    (Integer) b.get().get("statusCode")));
            pool.shutdown();
            java.util.Collections.sort(codes);
            // Whoever stored request.json first made the request; the other is its repeat, or refused.
            assertEquals(bodies[0].equals(bodies[1]) ? List.of(200, 202) : List.of(202, 422), codes);
        }
        assertEquals(2, executionNames().size());
    }

    Map<String, Object> submitWithQuery(String body, Map<String, String> query) {
        Map<String, Object> event = TestServices.event("POST", body, Map.of(), null);
        event.put("queryStringParameters", query);
        return fn.handleRequest(event, null);
    }

    @Test
    void falWebhookOnTheQueryIsKeptForFinalizeAndABadOneRefused() throws Exception {
        String url = upload("uploads/hook.zip", small);
        String body = "{\"data_url\":\"" + url + "\",\"denoisers\":[\"texture\"]}";
        // The tests' policy lets loopback through (the receivers run here); production refuses it like private ones.
        var resp = submitWithQuery(body, Map.of("fal_webhook", "http://127.0.0.1:9/hook?token=abc"));
        assertEquals(202, resp.get("statusCode"), (String) resp.get("body"));
        String id = body(resp).get("request_id").asText();
        assertEquals(id, body(resp).get("gateway_request_id").asText());
        JsonNode hook = Json.MAPPER.readTree(services.s3().getObjectAsBytes(g -> g.bucket(bucket())
                .key("requests/" + id + "/webhook.json")).asUtf8String());
        assertEquals("http://127.0.0.1:9/hook?token=abc", hook.get("url").asText());

        var privateHook = submitWithQuery(body, Map.of("fal_webhook", "https://10.0.0.7/hook"));
        assertEquals(400, privateHook.get("statusCode"));
        assertEquals("fal_webhook host '10.0.0.7' resolves to 10.0.0.7: it is a private or link-local address, "
                + "which the service does not fetch", body(privateHook).get("error").asText());
        var metadata = submitWithQuery(body, Map.of("fal_webhook", "https://169.254.169.254/latest/meta-data"));
        assertEquals(400, metadata.get("statusCode"));
        assertTrue(body(metadata).get("error").asText().contains("cloud metadata address"), metadata.toString());
        var ftp = submitWithQuery(body, Map.of("fal_webhook", "ftp://hooks.example.com/x"));
        assertEquals("fal_webhook leads to ftp://hooks.example.com/x, which is not https",
                body(ftp).get("error").asText());
        assertEquals(400, submitWithQuery(body, Map.of("fal_webhook", " ")).get("statusCode"));
        // Only the first request started; the refused ones stored nothing.
        assertEquals(List.of(id), executionNames());

        // In the body it is named for what it is, not just an unknown field.
        var inBody = submit("{\"data_url\":\"" + url + "\",\"denoisers\":[\"texture\"],"
                + "\"fal_webhook\":\"https://hooks.example.com/x\"}", Map.of());
        assertEquals(400, inBody.get("statusCode"));
        assertEquals("fal_webhook is a query parameter of the submit (POST /requests?fal_webhook=URL), not a field "
                + "of the request body", body(inBody).get("error").asText());
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
    void httpsArchiveFromAServerIgnoringRangeIsAcceptedProvisionallyAndLeftToPrepare() throws Exception {
        byte[] big = TestZips.forge(List.of(TestZips.Forged.file("pad.bin", new byte[4 << 20]),
                TestZips.Forged.file("a/chair.glb", "glTF")), false);
        String url = server.serveWhole("/whole-" + bucket() + ".zip", big);
        long before = server.bytesSent.get();
        var resp = submit("{\"data_url\":\"" + url + "\"}", Map.of());
        assertEquals(202, resp.get("statusCode"), (String) resp.get("body"));
        assertTrue(body(resp).at("/estimate/provisional").asBoolean(), (String) resp.get("body"));
        assertTrue(server.bytesSent.get() - before < big.length / 4, "sent " + (server.bytesSent.get() - before));
        String id = body(resp).get("request_id").asText();
        JsonNode stored = Json.MAPPER.readTree(services.s3().getObjectAsBytes(g -> g.bucket(bucket())
                .key("requests/" + id + "/request.json")).asUtf8String());
        assertEquals(url, stored.get("input_uri").asText());
        assertTrue(stored.path("inspection").isMissingNode(), stored.toString());
        assertEquals(1, services.s3().listObjectsV2(b -> b.bucket(bucket()).prefix("requests/" + id + "/"))
                .keyCount(), "only request.json");
        assertTrue(executionNames().contains(id));
    }

    @Test
    void s3DataUrlOutsideTheDeploymentsDataBucketsIsRefused() throws Exception {
        String other = Moto.newBucket(services.s3());
        services.s3().putObject(b -> b.bucket(other).key("a.zip"), RequestBody.fromBytes(small));
        var resp = submit("{\"data_url\":\"s3://" + other + "/a.zip\"}", Map.of());
        assertEquals(400, resp.get("statusCode"), (String) resp.get("body"));
        assertTrue(body(resp).get("error").asText().startsWith("data_url bucket '" + other + "' is not one"),
                (String) resp.get("body"));
        // A deployment that lists no data bucket reads no s3:// data_url, its own requests bucket included.
        var none = new SubmitFunction(new SubmitOperation(new Services(
                new io.trellis2lora.core.api.PlatformConfig(bucket(), services.config().stateMachineArn(),
                        TestServices.BASE_URL, services.config().presignTtl(), services.config().addressPolicy(),
                        java.util.Set.of()),
                services.s3(), services.presigner(), services.sfn(), services.http())));
        String mine = upload("uploads/mine.zip", small);
        var r = none.handleRequest(TestServices.event("POST", "{\"data_url\":\"" + mine + "\"}", Map.of(), null),
                null);
        assertEquals(400, r.get("statusCode"));
        assertTrue(body(r).get("error").asText().contains("reads no s3:// data_url"), (String) r.get("body"));
        assertEquals(List.of(), executionNames());
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
                        services.config().presignTtl(), services.config().addressPolicy(),
                        services.config().dataBuckets()),
                services.s3(), services.presigner(), services.sfn(), services.http()))).handleRequest(v2, null);
        assertEquals(202, r.get("statusCode"), (String) r.get("body"));
        assertTrue(body(r).get("status_url").asText().startsWith("https://api.example.org/requests/"),
                (String) r.get("body"));
    }
}
