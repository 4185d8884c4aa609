package io.trellis2lora.functions.estimate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.EstimateOperation;
import io.trellis2lora.core.api.Services;
import io.trellis2lora.core.testing.Moto;
import io.trellis2lora.core.testing.TestHttpsServer;
import io.trellis2lora.core.testing.TestServices;
import io.trellis2lora.core.testing.TestZips;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;
import software.amazon.awssdk.core.sync.RequestBody;

@ExtendWith(Moto.class)
class EstimateFunctionTest {
    static Services services;
    static EstimateFunction fn;
    static byte[] real20;

    @BeforeAll
    static void setUp(@TempDir Path tmp) throws Exception {
        services = TestServices.create(TestServices.RUNNING_MACHINE, true);
        fn = new EstimateFunction(new EstimateOperation(services));
        real20 = Files.readAllBytes(TestZips.realAssetsZip(tmp.resolve("r.zip"), 20));
    }

    static String bucket() {
        return services.config().requestsBucket();
    }

    Map<String, Object> estimate(String body) {
        return fn.handleRequest(TestServices.event("POST", body, Map.of(), null), null);
    }

    List<String> keys() {
        return services.s3().listObjectsV2(b -> b.bucket(bucket())).contents().stream().map(o -> o.key()).toList();
    }

    @Test
    void estimatePricesTheRequestAndStartsNothing() throws Exception {
        services.s3().putObject(b -> b.bucket(bucket()).key("in/a.zip"), RequestBody.fromBytes(real20));
        var resp = estimate("{\"data_url\":\"s3://" + bucket() + "/in/a.zip\",\"denoisers\":[\"sparse_structure\","
                + "\"geometry\",\"texture\"],\"training_steps\":2000}");
        assertEquals(200, resp.get("statusCode"), (String) resp.get("body"));
        JsonNode b = Json.MAPPER.readTree((String) resp.get("body"));
        assertEquals("31.93", b.at("/estimate/total").asText());
        assertEquals(20, b.at("/inspection/objects").asInt());
        assertEquals("raw", b.at("/inspection/kind").asText());
        assertTrue(keys().stream().allMatch(k -> k.startsWith("in/")), "estimate keeps nothing: " + keys());
        assertEquals(0, services.sfn().listExecutions(l -> l.stateMachineArn(services.config().stateMachineArn()))
                .executions().size());
    }

    @Test
    void preprocessedDatasetIsPricedWithoutPreparation() throws Exception {
        services.s3().putObject(b -> b.bucket(bucket()).key("in/prep.zip"),
                RequestBody.fromBytes(TestZips.preprocessed(1024, 40)));
        var resp = estimate("{\"data_url\":\"s3://" + bucket() + "/in/prep.zip\",\"resolution\":1024}");
        assertEquals(200, resp.get("statusCode"), (String) resp.get("body"));
        JsonNode b = Json.MAPPER.readTree((String) resp.get("body"));
        assertEquals("preprocessed", b.at("/inspection/kind").asText());
        assertEquals("0", b.at("/estimate/preparation/amount").asText());
        assertEquals("6.76", b.at("/estimate/total").asText()); // 1000 x 0.003378 x 1 x 2
        var wrong = estimate("{\"data_url\":\"s3://" + bucket() + "/in/prep.zip\",\"resolution\":512}");
        assertEquals(400, wrong.get("statusCode"));
        assertTrue(((String) wrong.get("body")).contains("prepared at resolution 1024"));
    }

    @Test
    void httpsArchiveWhoseServerIgnoresRangeIsPricedProvisionallyWithoutDownloadingIt() throws Exception {
        // Large enough that a download would show in the byte count.
        byte[] big = TestZips.forge(List.of(TestZips.Forged.file("pad.bin", new byte[4 << 20]),
                TestZips.Forged.file("a/chair.glb", "glTF")), false);
        try (var server = new TestHttpsServer()) {
            String url = server.serveWhole("/a.zip", big);
            var resp = estimate("{\"data_url\":\"" + url + "\",\"training_steps\":2000}");
            assertEquals(200, resp.get("statusCode"), (String) resp.get("body"));
            JsonNode b = Json.MAPPER.readTree((String) resp.get("body"));
            assertTrue(b.at("/estimate/provisional").asBoolean(), b.toString());
            assertTrue(b.path("inspection").isMissingNode() || b.path("inspection").isNull(), b.toString());
            assertEquals("1.0023", b.at("/estimate/preparation/amount").asText()); // the 10-object minimum
            assertEquals("7.76", b.at("/estimate/total").asText());                // + 2000 x 0.003378
            assertTrue(server.bytesSent.get() < big.length / 4, "sent " + server.bytesSent.get());
            assertTrue(keys().stream().allMatch(k -> k.startsWith("in/")), "kept: " + keys());
        }
    }

    @Test
    void s3ArchiveOutsideTheDataBucketsIsRefusedUnread() throws Exception {
        var s3 = services.s3();
        String other = io.trellis2lora.core.testing.Moto.newBucket(s3);
        s3.putObject(b -> b.bucket(other).key("in/a.zip"), RequestBody.fromBytes(real20));
        var resp = estimate("{\"data_url\":\"s3://" + other + "/in/a.zip\"}");
        assertEquals(400, resp.get("statusCode"), (String) resp.get("body"));
        JsonNode b = Json.MAPPER.readTree((String) resp.get("body"));
        assertEquals("data_url bucket '" + other + "' is not one this deployment reads from (allowed: " + bucket()
                + ")", b.get("error").asText());
    }

    @Test
    void trailingBytesAfterTheRequestAreRefusedWithOneLine() throws Exception {
        String ok = "{\"data_url\":\"s3://" + bucket() + "/in/x.zip\"}";
        for (String tail : new String[] {" {}", "x", ",", " []"}) {
            var resp = estimate(ok + tail);
            assertEquals(400, resp.get("statusCode"), ok + tail);
            JsonNode b = Json.MAPPER.readTree((String) resp.get("body"));
            assertEquals(1, b.get("problems").size(), b.toString());
            String line = b.get("error").asText();
            assertTrue(line.startsWith("request body is not valid JSON: "), line);
            assertFalse(line.contains("com.fasterxml") || line.contains("\n"), line);
        }
        var two = Json.MAPPER.readTree((String) estimate(ok + "\n" + ok).get("body"));
        assertTrue(two.get("error").asText().contains("more follows the JSON value")
                && two.get("error").asText().contains("line 2"), two.toString());
    }

    @Test
    void wrongTypesAreA400NeverA500() throws Exception {
        for (String body : new String[] {"{\"data_url\":1,\"rank\":\"x\",\"training_steps\":-5}", "[]", "7",
                "{\"data_url\":\"s3://" + "b/k.zip\",\"learning_rate\":1e999}", "\u0000"}) {
            assertEquals(400, estimate(body).get("statusCode"), body);
        }
    }
}
