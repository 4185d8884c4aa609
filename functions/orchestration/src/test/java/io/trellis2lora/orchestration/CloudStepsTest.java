package io.trellis2lora.orchestration;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.Assessment;
import io.trellis2lora.core.api.StoredRequest;
import io.trellis2lora.core.model.Denoiser;
import io.trellis2lora.core.model.TrainingResult;
import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.core.testing.Moto;
import io.trellis2lora.core.testing.TestPaths;
import io.trellis2lora.core.testing.WorkerRecords;
import io.trellis2lora.core.validation.RequestValidator;
import io.trellis2lora.core.zip.ArchiveOpener;
import io.trellis2lora.core.zip.S3Stager;
import io.trellis2lora.core.net.AddressPolicy;
import io.trellis2lora.core.net.SafeHttp;
import io.trellis2lora.core.testing.TestHttpsServer;
import io.trellis2lora.core.testing.TestZips;
import io.trellis2lora.core.storage.S3ObjectStore;
import java.io.ByteArrayOutputStream;
import java.nio.file.Files;
import java.util.List;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.services.s3.S3Client;

/** Prepare and Finalize as the Lambdas run them: on the requests bucket (moto's S3), with s3:// URIs throughout. */
@ExtendWith(Moto.class)
class CloudStepsTest {

    @Test
    void prepareThenFinalizeOnS3WithOneFailedStageAndTheCacheRecorded() throws Exception {
        S3Client s3 = Moto.s3();
        String bucket = Moto.newBucket(s3);
        S3ObjectStore store = new S3ObjectStore(s3, bucket);
        ByteArrayOutputStream zip = new ByteArrayOutputStream();
        try (ZipOutputStream z = new ZipOutputStream(zip)) {
            z.putNextEntry(new ZipEntry("Duck.glb"));
            z.write(Files.readAllBytes(TestPaths.realAssets().resolve("trimesh/Duck.glb")));
            z.closeEntry();
        }
        s3.putObject(b -> b.bucket(bucket).key("in/assets.zip"), RequestBody.fromBytes(zip.toByteArray()));
        String id = "req-cloud-1";
        var request = new RequestValidator(RequestValidator.Mode.CLOUD).parse("{\"data_url\": \"s3://" + bucket
                + "/in/assets.zip\", \"denoisers\": [\"texture\", \"geometry\"], \"training_steps\": 2000}");
        ArchiveOpener opener = new ArchiveOpener(s3, null);
        Assessment a = Assessment.of(request, opener, new S3Stager(s3, bucket, StorageLayout.stagedInput(id)));
        store.write(StorageLayout.requestJson(id), Json.pretty(new StoredRequest(id, "t", null, a.request(),
                a.inputUri(), a.inspection(), a.estimate())).getBytes(), "application/json");

        Preparer preparer = new Preparer(store, opener, null, List.of());
        Plan plan = preparer.prepare(Json.MAPPER.readTree("{\"request_id\": \"" + id + "\"}"));
        assertTrue(plan.needsPreprocess());
        assertEquals("microsoft/TRELLIS.2-4B", plan.baseModel());
        assertEquals(List.of(Denoiser.TEXTURE, Denoiser.GEOMETRY), plan.stages().stream().map(Plan.Stage::denoiser).toList());
        assertEquals(2, plan.stageCount());
        assertTrue(plan.datasetUri().startsWith("s3://" + bucket + "/datasets/"));
        List<String> train = plan.stages().get(0).command();
        assertEquals("train", train.get(0));
        assertEquals(plan.datasetUri(), train.get(train.indexOf("--dataset") + 1));
        assertEquals("s3://" + bucket + "/requests/" + id + "/adapters/texture.safetensors",
                train.get(train.indexOf("--output") + 1));

        // What the jobs leave: the dataset and the texture adapter; geometry's job wrote an error report.
        s3.putObject(b -> b.bucket(bucket).key(store.keyOf(plan.datasetUri()).orElseThrow()), RequestBody.fromBytes(new byte[77]));
        s3.putObject(b -> b.bucket(bucket).key(StorageLayout.adapter(id, Denoiser.TEXTURE)), RequestBody.fromBytes(new byte[55]));
        s3.putObject(b -> b.bucket(bucket).key(StorageLayout.adapterReport(id, Denoiser.TEXTURE)), RequestBody.fromBytes(
                WorkerRecords.bytes(Denoiser.TEXTURE, a.request(), plan.stages().get(0).outputUri(), 55)));
        s3.putObject(b -> b.bucket(bucket).key(StorageLayout.adapterReport(id, Denoiser.GEOMETRY)),
                RequestBody.fromString("{\"error\": \"geometry latents are missing for 1 object\\n(see log)\"}"));

        Finalizer finalizer = new Finalizer(store, null);
        ObjectNode failureEvent = Json.MAPPER.createObjectNode();
        failureEvent.put("action", "describe_failure").put("request_id", id).put("denoiser", "geometry")
                .put("report_uri", plan.stages().get(1).reportUri());
        failureEvent.putObject("failure").put("Error", "States.TaskFailed").put("Cause", "{\"Status\": \"FAILED\"}");
        JsonNode failed = finalizer.handle(failureEvent);
        assertEquals("geometry latents are missing for 1 object (see log)", failed.get("error").asText());

        ObjectNode event = Json.MAPPER.createObjectNode();
        event.put("action", "finalize").put("request_id", id);
        event.set("prepared", Json.MAPPER.valueToTree(plan));
        event.set("stage_results", Json.MAPPER.createArrayNode()
                .add(Json.MAPPER.createObjectNode().put("denoiser", "texture").put("job_id", "j1"))
                .add(failed));
        event.putNull("failure");
        JsonNode outcome = finalizer.handle(event);
        assertEquals("OK", outcome.get("status").asText());

        // result.json is exactly the contract (platform's strict parser reads it back).
        TrainingResult result = TrainingResult.parse(s3.getObjectAsBytes(
                b -> b.bucket(bucket).key(StorageLayout.resultJson(id))).asUtf8String());
        assertEquals(1, result.adapters().size());
        assertEquals("s3://" + bucket + "/" + StorageLayout.adapter(id, Denoiser.TEXTURE), result.adapters().get(0).loraFile().url());
        assertEquals(55L, result.adapters().get(0).loraFile().fileSize());
        assertEquals(Denoiser.GEOMETRY, result.failed().get(0).denoiser());
        assertEquals(plan.datasetUri(), result.preprocessedDataFile().url());
        assertEquals(77L, result.preprocessedDataFile().fileSize());
        // Charged: preparation (10-object minimum) plus texture only: 1.0023 + 2000 × 0.003378.
        assertEquals(0, new java.math.BigDecimal("7.7583").compareTo(outcome.at("/charge/subtotal").decimalValue()));
        assertTrue(store.exists(Keys.datasetRecord(plan.datasetKey())));
        assertFalse(store.exists(StorageLayout.adapterReport(id, Denoiser.GEOMETRY)));

        // The next request for the same bytes, resolution and base reuses the dataset: no preprocessing, no charge.
        String id2 = "req-cloud-2";
        store.write(StorageLayout.requestJson(id2), Json.pretty(new StoredRequest(id2, "t", null, a.request(),
                a.inputUri(), a.inspection(), a.estimate())).getBytes(), "application/json");
        Plan again = preparer.prepare(Json.MAPPER.readTree("{\"request_id\": \"" + id2 + "\"}"));
        assertTrue(again.cached());
        assertFalse(again.needsPreprocess());
        assertNull(again.preprocess());
        assertEquals(plan.datasetUri(), again.datasetUri());
        assertEquals(0, again.estimate().preparation().amount().signum());
        // Another base model is another dataset.
        Plan otherBase = new Preparer(store, opener, "tiny", List.of())
                .prepare(Json.MAPPER.readTree("{\"request_id\": \"" + id2 + "\"}"));
        assertTrue(otherBase.needsPreprocess());
    }

    @Test
    void prepareStagesAnArchiveWhoseServerIgnoresRangeAndPinsTheJobsToTheCopy() throws Exception {
        S3Client s3 = Moto.s3();
        String bucket = Moto.newBucket(s3);
        S3ObjectStore store = new S3ObjectStore(s3, bucket);
        byte[] zip = TestZips.forge(List.of(TestZips.Forged.file("a/chair.glb", "glTF"),
                TestZips.Forged.file("b/table.obj", "v 0 0 0")), false);
        String id = "req-cloud-staged";
        try (var server = new TestHttpsServer();
             var http = new SafeHttp(new AddressPolicy(true, false), TestHttpsServer.clientContext())) {
            String url = server.serveWhole("/whole.zip", zip);
            var request = new RequestValidator(RequestValidator.Mode.CLOUD).parse("{\"data_url\": \"" + url + "\"}");
            ArchiveOpener opener = new ArchiveOpener(s3, http, java.util.Set.of());
            // What submit does: no download, a provisional price.
            Assessment a = Assessment.of(request, opener, null);
            assertNull(a.inspection());
            assertTrue(a.estimate().provisional());
            store.write(StorageLayout.requestJson(id), Json.pretty(new StoredRequest(id, "t", null, a.request(),
                    a.inputUri(), a.inspection(), a.estimate())).getBytes(), "application/json");

            Plan plan = new Preparer(store, opener, null, List.of())
                    .prepare(Json.MAPPER.readTree("{\"request_id\": \"" + id + "\"}"));
            String staged = "s3://" + bucket + "/requests/" + id + "/input.zip";
            assertEquals(staged, plan.inputUri());
            List<String> preprocess = plan.preprocess().command();
            assertEquals(staged, preprocess.get(preprocess.indexOf("--input") + 1));
            assertArrayEquals(zip, s3.getObjectAsBytes(b -> b.bucket(bucket).key("requests/" + id + "/input.zip"))
                    .asByteArray());
            // Prepare's price is exact (2 objects, the 10-object minimum) and the record holds the copy's bytes.
            assertEquals(2, plan.objects());
            assertNull(plan.estimate().provisional());
            JsonNode record = Json.MAPPER.readTree(store.read(Keys.inputRecord(id)).orElseThrow());
            assertEquals(staged, record.get("uri").asText());
            assertEquals(zip.length, record.get("bytes").asLong());
            assertEquals(Preparer.sha256Hex(zip), record.get("sha256").asText());
        }
    }
}
