package io.trellis2lora.functions.result;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.ResultOperation;
import io.trellis2lora.core.api.Services;
import io.trellis2lora.core.testing.Moto;
import io.trellis2lora.core.testing.TestServices;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import software.amazon.awssdk.core.sync.RequestBody;

@ExtendWith(Moto.class)
class ResultFunctionTest {

    static Map<String, Object> result(Services s, String id) {
        return new ResultFunction(new ResultOperation(s)).handleRequest(TestServices.get(id), null);
    }

    static String start(Services s) throws InterruptedException {
        String id = UUID.randomUUID().toString();
        s.sfn().startExecution(b -> b.stateMachineArn(s.config().stateMachineArn()).name(id).input("{}"));
        Thread.sleep(300);
        return id;
    }

    @Test
    void resultFilesComeBackAsWorkingPresignedUrls() throws Exception {
        Services s = TestServices.create(TestServices.SUCCEEDING_MACHINE);
        String id = start(s);
        String bucket = s.config().requestsBucket();
        byte[] lora = "safetensors bytes".getBytes();
        byte[] dataset = "dataset zip bytes".getBytes();
        s.s3().putObject(b -> b.bucket(bucket).key("requests/" + id + "/adapters/texture.safetensors"),
                RequestBody.fromBytes(lora));
        s.s3().putObject(b -> b.bucket(bucket).key("datasets/k1/preprocessed.zip"), RequestBody.fromBytes(dataset));
        String resultJson = "{\"adapters\":[{\"denoiser\":\"texture\",\"resolution\":512,\"lora_file\":{\"url\":"
                + "\"s3://" + bucket + "/requests/" + id + "/adapters/texture.safetensors\",\"content_type\":"
                + "\"application/octet-stream\",\"file_name\":\"texture.safetensors\",\"file_size\":" + lora.length
                + "},\"rank\":32,\"training_steps\":1000,\"learning_rate\":0.0001}],"
                + "\"failed\":[{\"denoiser\":\"geometry\",\"error\":\"out of memory\"}],"
                + "\"preprocessed_data_file\":{\"url\":\"s3://" + bucket + "/datasets/k1/preprocessed.zip\","
                + "\"content_type\":\"application/zip\",\"file_name\":\"preprocessed.zip\",\"file_size\":"
                + dataset.length + "}}";
        s.s3().putObject(b -> b.bucket(bucket).key("requests/" + id + "/result.json"),
                RequestBody.fromString(resultJson));

        var resp = result(s, id);
        assertEquals(200, resp.get("statusCode"), (String) resp.get("body"));
        JsonNode b = Json.MAPPER.readTree((String) resp.get("body"));
        assertEquals("texture", b.at("/adapters/0/denoiser").asText());
        assertEquals(lora.length, b.at("/adapters/0/lora_file/file_size").asInt());
        assertEquals("out of memory", b.at("/failed/0/error").asText());
        HttpClient http = HttpClient.newHttpClient();
        for (var pair : Map.of("/adapters/0/lora_file/url", lora, "/preprocessed_data_file/url", dataset).entrySet()) {
            String url = b.at(pair.getKey()).asText();
            assertTrue(url.contains("X-Amz-Signature="), url);
            HttpResponse<byte[]> got = http.send(HttpRequest.newBuilder(URI.create(url)).build(),
                    HttpResponse.BodyHandlers.ofByteArray());
            assertEquals(200, got.statusCode(), url);
            assertArrayEquals(pair.getValue(), got.body());
        }
    }

    @Test
    void unfinishedFailedAndUnknownRequestsAreExplained() throws Exception {
        Services running = TestServices.create(TestServices.RUNNING_MACHINE);
        var r = result(running, start(running));
        assertEquals(409, r.get("statusCode"));
        assertTrue(((String) r.get("body")).contains("still in progress"));

        Services failing = TestServices.create(TestServices.FAILING_MACHINE);
        var f = result(failing, start(failing));
        assertEquals(409, f.get("statusCode"));
        assertTrue(((String) f.get("body")).contains("AllStagesFailed"), (String) f.get("body"));

        assertEquals(404, result(running, UUID.randomUUID().toString()).get("statusCode"));
        assertEquals(400, result(running, "a/b").get("statusCode"));
    }

    @Test
    void damagedResultDocumentIsAServerErrorNotTheUsers() throws Exception {
        Services s = TestServices.create(TestServices.SUCCEEDING_MACHINE);
        String id = start(s);
        s.s3().putObject(b -> b.bucket(s.config().requestsBucket()).key("requests/" + id + "/result.json"),
                RequestBody.fromString("{\"adapters\":[],\"surprise\":1}"));
        var resp = result(s, id);
        assertEquals(500, resp.get("statusCode"));
        assertTrue(!((String) resp.get("body")).contains("surprise"), "no internals in the answer");
    }
}
