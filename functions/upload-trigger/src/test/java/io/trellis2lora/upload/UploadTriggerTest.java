package io.trellis2lora.upload;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.amazonaws.services.lambda.runtime.events.SQSEvent;
import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.Services;
import io.trellis2lora.core.api.StoredRequest;
import io.trellis2lora.core.model.Denoiser;
import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.core.testing.Moto;
import io.trellis2lora.core.testing.TestPaths;
import io.trellis2lora.core.testing.TestServices;
import io.trellis2lora.orchestration.UploadTrigger;
import java.io.ByteArrayOutputStream;
import java.nio.file.Files;
import java.util.List;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.services.sfn.model.ExecutionListItem;

/** Uploads under uploads/ start one execution each, against moto's S3 and Step Functions. */
@ExtendWith(Moto.class)
class UploadTriggerTest {
    private static Services services;
    private static UploadTrigger trigger;

    @BeforeAll
    static void setUp() {
        services = TestServices.create(TestServices.RUNNING_MACHINE);
        trigger = new UploadTrigger(services.s3(), services.sfn(), services.http(), services.config().requestsBucket(),
                services.config().stateMachineArn());
    }

    private static byte[] zipOfRealAsset(String extra) throws Exception {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ZipOutputStream zip = new ZipOutputStream(bytes)) {
            zip.putNextEntry(new ZipEntry("assets/Duck.glb"));
            zip.write(Files.readAllBytes(TestPaths.realAssets().resolve("trimesh/Duck.glb")));
            zip.closeEntry();
            zip.putNextEntry(new ZipEntry("assets/readme.txt"));
            zip.write(extra.getBytes());
            zip.closeEntry();
        }
        return bytes.toByteArray();
    }

    private static String put(String key, byte[] data) {
        String bucket = services.config().requestsBucket();
        services.s3().putObject(b -> b.bucket(bucket).key(key), RequestBody.fromBytes(data));
        return services.s3().headObject(b -> b.bucket(bucket).key(key)).eTag();
    }

    /** What S3 sends to the queue for one new object (keys URL-encoded, as S3 does). */
    private static String s3Event(String key, String etag) {
        String encoded = java.net.URLEncoder.encode(key, java.nio.charset.StandardCharsets.UTF_8).replace("%2F", "/");
        return """
                {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                  "s3": {"bucket": {"name": "%s"}, "object": {"key": "%s", "size": 1, "eTag": "%s"}}}]}
                """.formatted(services.config().requestsBucket(), encoded, etag.replace("\"", ""));
    }

    private static List<ExecutionListItem> executions(String requestId) {
        return services.sfn().listExecutions(b -> b.stateMachineArn(services.config().stateMachineArn()))
                .executions().stream().filter(e -> e.name().equals(requestId)).toList();
    }

    private static StoredRequest stored(String requestId) throws Exception {
        return Json.MAPPER.readValue(services.s3().getObjectAsBytes(b -> b.bucket(services.config().requestsBucket())
                .key(StorageLayout.requestJson(requestId))).asByteArray(), StoredRequest.class);
    }

    @Test
    void aZipWithItsSidecarStartsOneExecutionEvenWhenTheEventComesTwice() throws Exception {
        put("uploads/chairs set.json",
                ("{\"denoisers\": [\"geometry\", \"texture\"], \"training_steps\": 200, \"rank\": 16,"
                        + " \"fal_webhook\": \"https://hooks.example.com/done\"}").getBytes());
        String etag = put("uploads/chairs set.zip", zipOfRealAsset("one"));
        String event = s3Event("uploads/chairs set.zip", etag);

        List<UploadTrigger.Outcome> first = trigger.handle(event);
        assertEquals(UploadTrigger.Result.STARTED, first.get(0).result());
        String id = first.get(0).requestId();
        // The same event delivered again (SQS is at-least-once), and once more through the Lambda handler.
        assertEquals(UploadTrigger.Result.DUPLICATE, trigger.handle(event).get(0).result());
        assertEquals(1, executions(id).size());

        StoredRequest stored = stored(id);
        assertEquals(List.of(Denoiser.GEOMETRY, Denoiser.TEXTURE), stored.request().denoisers());
        assertEquals(200, stored.request().trainingSteps());
        assertEquals("s3://" + services.config().requestsBucket() + "/uploads/chairs set.zip", stored.request().dataUrl());
        assertEquals(1, stored.inspection().objects());
        assertEquals("https://hooks.example.com/done", Json.MAPPER.readTree(services.s3().getObjectAsBytes(
                b -> b.bucket(services.config().requestsBucket()).key(StorageLayout.requestPrefix(id) + "webhook.json"))
                .asByteArray()).get("url").asText());
        JsonNode input = Json.MAPPER.readTree(services.sfn().describeExecution(
                b -> b.executionArn(executions(id).get(0).executionArn())).input());
        assertEquals(id, input.get("request_id").asText());

        // A new upload under the same key is a new object (new ETag): it is a new request.
        String etag2 = put("uploads/chairs set.zip", zipOfRealAsset("two"));
        List<UploadTrigger.Outcome> again = trigger.handle(s3Event("uploads/chairs set.zip", etag2));
        assertEquals(UploadTrigger.Result.STARTED, again.get(0).result());
        assertTrue(!again.get(0).requestId().equals(id));
    }

    @Test
    void withoutASidecarTheDefaultsApply() throws Exception {
        String etag = put("uploads/plain.zip", zipOfRealAsset("plain"));
        String id = trigger.handle(s3Event("uploads/plain.zip", etag)).get(0).requestId();
        StoredRequest stored = stored(id);
        assertEquals(List.of(Denoiser.TEXTURE), stored.request().denoisers());
        assertEquals(1000, stored.request().trainingSteps());
        assertEquals(512, stored.request().resolution());
    }

    @Test
    void aBadSidecarIsReportedBesideTheZipAndStartsNothing() throws Exception {
        put("uploads/bad.json", "{\"rank\": 7, \"denoisers\": [\"colour\"]}".getBytes());
        String etag = put("uploads/bad.zip", zipOfRealAsset("bad"));
        List<UploadTrigger.Outcome> outcome = trigger.handle(s3Event("uploads/bad.zip", etag));
        assertEquals(UploadTrigger.Result.REFUSED, outcome.get(0).result());
        JsonNode error = Json.MAPPER.readTree(services.s3().getObjectAsBytes(
                b -> b.bucket(services.config().requestsBucket()).key("uploads/bad.error.json")).asByteArray());
        assertTrue(error.get("error").asText().contains("rank"), error.toString());
        assertTrue(error.get("error").asText().contains("colour"), error.toString());
        assertEquals(0, executions(UploadTrigger.requestId(services.config().requestsBucket(), "uploads/bad.zip",
                etag.replace("\"", ""))).size());

        put("uploads/notjson.json", "{rank: ".getBytes());
        String etag2 = put("uploads/notjson.zip", zipOfRealAsset("x"));
        assertEquals(UploadTrigger.Result.REFUSED, trigger.handle(s3Event("uploads/notjson.zip", etag2)).get(0).result());
        assertTrue(new String(services.s3().getObjectAsBytes(b -> b.bucket(services.config().requestsBucket())
                .key("uploads/notjson.error.json")).asByteArray()).contains("not valid JSON"));
    }

    @Test
    void otherObjectsAreIgnoredAndTheHandlerAnswersPerMessage() throws Exception {
        String etag = put("uploads/handler.zip", zipOfRealAsset("handler"));
        put("uploads/notes.txt", "x".getBytes());
        SQSEvent event = new SQSEvent();
        SQSEvent.SQSMessage good = new SQSEvent.SQSMessage();
        good.setMessageId("m1");
        good.setBody(s3Event("uploads/handler.zip", etag));
        SQSEvent.SQSMessage other = new SQSEvent.SQSMessage();
        other.setMessageId("m2");
        other.setBody(s3Event("uploads/notes.txt", "abc"));
        SQSEvent.SQSMessage garbage = new SQSEvent.SQSMessage();
        garbage.setMessageId("m3");
        garbage.setBody("not json");
        event.setRecords(List.of(good, other, garbage));
        assertEquals(UploadTrigger.Result.IGNORED, trigger.handle(other.getBody()).get(0).result());
        // Only the unreadable message is handed back to SQS for another try.
        var response = new UploadTriggerHandler(trigger).handleRequest(event, null);
        assertEquals(List.of("m3"), response.getBatchItemFailures().stream().map(f -> f.getItemIdentifier()).toList());
        String id = UploadTrigger.requestId(services.config().requestsBucket(), "uploads/handler.zip",
                etag.replace("\"", ""));
        assertEquals(1, executions(id).size());
    }
}
