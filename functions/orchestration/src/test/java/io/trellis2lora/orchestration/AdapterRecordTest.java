package io.trellis2lora.orchestration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.StoredRequest;
import io.trellis2lora.core.model.Denoiser;
import io.trellis2lora.core.model.TrainingRequest;
import io.trellis2lora.core.model.TrainingResult;
import io.trellis2lora.core.pricing.Pricing;
import io.trellis2lora.core.storage.DirectoryObjectStore;
import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.core.testing.WorkerRecords;
import io.trellis2lora.core.zip.ZipInspection;
import java.math.BigDecimal;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The training job's record is what result.json lists for its adapter: metrics and extra files included. */
class AdapterRecordTest {
    static final String ID = "req-record-1";
    static final TrainingRequest REQUEST = new TrainingRequest("/data/in.zip", List.of(Denoiser.TEXTURE), 512, 32,
            new BigDecimal("0.0001"), 1000);

    @TempDir
    Path dir;

    /** Finalizes one texture stage whose job left the adapter and the record {@code edit} makes of the worker's. */
    private JsonNode finalizeWith(Consumer<ObjectNode> edit) throws Exception {
        DirectoryObjectStore store = new DirectoryObjectStore(dir);
        store.write(StorageLayout.requestJson(ID), Json.pretty(new StoredRequest(ID, "t", null, REQUEST,
                "/data/in.zip", new ZipInspection(ZipInspection.Kind.RAW, 3, 3, 100, 200, false, null),
                Pricing.estimate(REQUEST, 3, false))).getBytes(), "application/json");
        String adapter = StorageLayout.adapter(ID, Denoiser.TEXTURE);
        store.write(adapter, new byte[321], "application/octet-stream");
        ObjectNode record = WorkerRecords.of(Denoiser.TEXTURE, REQUEST, store.uri(adapter), 321);
        edit.accept(record);
        store.write(StorageLayout.adapterReport(ID, Denoiser.TEXTURE), Json.pretty(record).getBytes(),
                "application/json");
        ObjectNode event = Json.MAPPER.createObjectNode().put("action", "finalize").put("request_id", ID);
        event.putObject("prepared").put("request_id", ID).put("objects", 3)
                .put("dataset_uri", store.uri("datasets/k/preprocessed.zip")).put("needs_preprocess", false);
        ArrayNode results = event.putArray("stage_results");
        results.addObject().put("denoiser", "texture").put("job_id", "j");
        event.putNull("failure");
        new Finalizer(store, null).handle(event);
        return Json.MAPPER.readTree(Files.readString(dir.resolve(StorageLayout.resultJson(ID))));
    }

    @Test
    void theMetricsAndAnExtraFileReachResultJson() throws Exception {
        DirectoryObjectStore store = new DirectoryObjectStore(dir);
        String comfy = StorageLayout.requestPrefix(ID) + "adapters/texture.comfyui.safetensors";
        store.write(comfy, new byte[4096], "application/octet-stream");
        JsonNode result = finalizeWith(r -> r.putObject("comfyui_lora_file").put("url", store.uri(comfy))
                .put("content_type", "application/octet-stream").put("file_name", "texture.comfyui.safetensors")
                .put("file_size", 1));
        JsonNode a = result.at("/adapters/0");
        assertEquals(0.47, a.at("/metrics/heldout_flow_loss_adapted").asDouble());
        assertEquals(4, a.at("/metrics/heldout_objects").asInt());
        assertEquals(321, a.at("/lora_file/file_size").asLong());
        assertEquals(store.uri(comfy), a.at("/comfyui_lora_file/url").asText());
        // The stored size, not the one the record claimed.
        assertEquals(4096, a.at("/comfyui_lora_file/file_size").asLong());
        assertEquals("texture.comfyui.safetensors", a.at("/comfyui_lora_file/file_name").asText());
        // The result API's parser reads it back, and presigning rewrites the extra file too.
        TrainingResult parsed = TrainingResult.parse(result.toString()).mapFiles(f -> f.withUrl("https://x/"
                + f.fileName()));
        JsonNode again = Json.MAPPER.valueToTree(parsed);
        assertEquals("https://x/texture.comfyui.safetensors", again.at("/adapters/0/comfyui_lora_file/url").asText());
        assertEquals("https://x/texture.safetensors", again.at("/adapters/0/lora_file/url").asText());
        assertEquals(0.47, again.at("/adapters/0/metrics/heldout_flow_loss_adapted").asDouble());
    }

    @Test
    void aRecordThatDisagreesWithTheRequestFailsTheStage() throws Exception {
        JsonNode result = finalizeWith(r -> r.put("rank", 8));
        assertEquals(0, result.path("adapters").size());
        assertEquals("the training job's adapter record says rank 8 where the request asked for 32",
                result.at("/failed/0/error").asText());
    }

    @Test
    void aFileOutsideTheRequestsAdaptersOrMissingFailsTheStage() throws Exception {
        JsonNode outside = finalizeWith(r -> r.putObject("preview_file").put("url", dir.resolve("elsewhere.png")
                .toString()));
        assertTrue(outside.at("/failed/0/error").asText().contains("outside the request's adapters"),
                outside.toString());
        JsonNode missing = finalizeWith(r -> r.putObject("preview_file").put("url", dir.resolve(
                StorageLayout.requestPrefix(ID) + "adapters/texture.preview.png").toString()));
        assertEquals("the training job succeeded but left no texture.preview.png",
                missing.at("/failed/0/error").asText());
    }

    @Test
    void withoutARecordOrWithAMalformedOneTheStageFails() throws Exception {
        JsonNode malformed = finalizeWith(r -> r.put("resolution", "big"));
        assertEquals("the training job's adapter record is not valid at resolution",
                malformed.at("/failed/0/error").asText());
        Files.delete(dir.resolve(StorageLayout.adapterReport(ID, Denoiser.TEXTURE)));
        DirectoryObjectStore store = new DirectoryObjectStore(dir);
        ObjectNode event = Json.MAPPER.createObjectNode().put("action", "finalize").put("request_id", ID);
        event.putObject("prepared").put("request_id", ID).put("objects", 3)
                .put("dataset_uri", store.uri("datasets/k/preprocessed.zip")).put("needs_preprocess", false);
        event.putArray("stage_results").addObject().put("denoiser", "texture").put("job_id", "j");
        event.putNull("failure");
        JsonNode outcome = new Finalizer(store, null).handle(event);
        assertEquals("ERROR", outcome.path("status").asText());
        assertEquals("the training job succeeded but left no adapter record", outcome.at("/result/failed/0/error")
                .asText());
        assertFalse(outcome.at("/result/adapters").elements().hasNext());
    }
}
