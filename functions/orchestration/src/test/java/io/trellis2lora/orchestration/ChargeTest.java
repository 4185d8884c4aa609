package io.trellis2lora.orchestration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.StoredRequest;
import io.trellis2lora.core.model.Denoiser;
import io.trellis2lora.core.model.TrainingRequest;
import io.trellis2lora.core.pricing.Pricing;
import io.trellis2lora.core.storage.DirectoryObjectStore;
import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.core.testing.WorkerRecords;
import io.trellis2lora.core.zip.ZipInspection;
import java.math.BigDecimal;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What charge.json says a request cost: nothing when it gave nothing back, and what preprocessing did. */
class ChargeTest {
    static final String ID = "req-charge-1";
    static final TrainingRequest REQUEST = new TrainingRequest("/data/in.zip", List.of(Denoiser.TEXTURE), 512, 32,
            new BigDecimal("0.0001"), 1000);

    @TempDir
    Path dir;

    private DirectoryObjectStore store() throws Exception {
        DirectoryObjectStore store = new DirectoryObjectStore(dir);
        store.write(StorageLayout.requestJson(ID), Json.pretty(new StoredRequest(ID, "t", null, REQUEST,
                "/data/in.zip", new ZipInspection(ZipInspection.Kind.RAW, 3, 3, 100, 200, false, null),
                Pricing.estimate(REQUEST, 3, false))).getBytes(), "application/json");
        return store;
    }

    private ObjectNode event(boolean prepared) {
        ObjectNode event = Json.MAPPER.createObjectNode().put("action", "finalize").put("request_id", ID);
        if (prepared) {
            event.putObject("prepared").put("request_id", ID).put("objects", 3)
                    .put("dataset_uri", "datasets/k/preprocessed.zip").put("needs_preprocess", true);
        }
        return event;
    }

    private JsonNode charge(DirectoryObjectStore store, ObjectNode event) throws Exception {
        new Finalizer(store, null).handle(event);
        return Json.MAPPER.readTree(Files.readString(dir.resolve(Keys.charge(ID))));
    }

    @Test
    void aRequestWhosePreprocessingFailedIsChargedNothing() throws Exception {
        DirectoryObjectStore store = store();
        store.write(Keys.preprocessReport(ID), "{\"error\": \"no object could be preprocessed (3 found)\"}".getBytes(),
                "application/json");
        ObjectNode event = event(true);
        event.putObject("failure").put("Error", "States.TaskFailed").put("Cause", "{}");
        JsonNode charge = charge(store, event);
        assertEquals(0, charge.get("total").decimalValue().signum(), charge.toString());
        assertEquals(0, charge.at("/preparation/billed_objects").asInt());
    }

    @Test
    void aRequestWhosePreparationFailedIsChargedNothing() throws Exception {
        ObjectNode event = event(false);
        event.putObject("failure").put("Error", "InputRefused").put("Cause", "{\"errorMessage\": \"not a zip\"}");
        JsonNode charge = charge(store(), event);
        assertEquals(0, charge.get("total").decimalValue().signum(), charge.toString());
    }

    @Test
    void aChargeSaysHowManyObjectsWereProcessedAndRefused() throws Exception {
        DirectoryObjectStore store = store();
        store.write(Keys.preprocessReport(ID), "{\"objects_succeeded\": 2, \"objects_failed\": 1}".getBytes(),
                "application/json");
        String adapter = StorageLayout.adapter(ID, Denoiser.TEXTURE);
        store.write(adapter, new byte[321], "application/octet-stream");
        store.write(StorageLayout.adapterReport(ID, Denoiser.TEXTURE), Json.pretty(
                WorkerRecords.of(Denoiser.TEXTURE, REQUEST, store.uri(adapter), 321)).getBytes(), "application/json");
        ObjectNode event = event(true);
        event.putArray("stage_results").addObject().put("denoiser", "texture").put("job_id", "j");
        event.putNull("failure");
        JsonNode charge = charge(store, event);
        assertEquals(2, charge.at("/preparation/processed_objects").asInt(), charge.toString());
        assertEquals(1, charge.at("/preparation/refused_objects").asInt());
        assertEquals(10, charge.at("/preparation/billed_objects").asInt(), "the 10-object minimum");
        assertTrue(charge.get("total").decimalValue().signum() > 0);
    }
}
