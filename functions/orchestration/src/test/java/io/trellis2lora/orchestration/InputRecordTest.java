package io.trellis2lora.orchestration;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.Assessment;
import io.trellis2lora.core.api.StoredRequest;
import io.trellis2lora.core.net.AddressPolicy;
import io.trellis2lora.core.net.SafeHttp;
import io.trellis2lora.core.storage.DirectoryObjectStore;
import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.core.testing.TestHttpsServer;
import io.trellis2lora.core.testing.TestZips;
import io.trellis2lora.core.validation.RequestValidator;
import io.trellis2lora.core.zip.ArchiveOpener;
import io.trellis2lora.core.zip.TempFileStager;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Prepare pins every job to the bytes it inspected: the record the worker checks, and the flags that hand it over. */
class InputRecordTest {
    @TempDir
    Path tmp;

    private Plan prepare(Path zip, DirectoryObjectStore store, String id) throws Exception {
        var request = new RequestValidator(RequestValidator.Mode.LOCAL).parse("{\"data_url\": \""
                + zip.toString().replace("\\", "\\\\") + "\", \"denoisers\": [\"geometry\"]}");
        ArchiveOpener opener = new ArchiveOpener(null, null);
        Assessment a = Assessment.of(request, opener, new TempFileStager());
        store.write(StorageLayout.requestJson(id), Json.pretty(new StoredRequest(id, "t", null, a.request(),
                a.inputUri(), a.inspection(), a.estimate())).getBytes(StandardCharsets.UTF_8), "application/json");
        return new Preparer(store, opener, "tiny", List.of()).prepare(
                Json.MAPPER.readTree("{\"request_id\": \"" + id + "\"}"));
    }

    private static String arg(List<String> command, String flag) {
        return command.get(command.indexOf(flag) + 1);
    }

    @Test
    void rawArchiveRecordHoldsItsBytesAndObjectsAndThePreprocessJobGetsIt() throws Exception {
        byte[] zip = TestZips.forge(List.of(TestZips.Forged.file("b/chair.obj", "v 0 0 0\n"),
                TestZips.Forged.file("a.GLB", "glb"), TestZips.Forged.file("__MACOSX/._a.glb", "fork"),
                TestZips.Forged.file("notes.txt", "hi")), false);
        Path file = TestZips.write(tmp.resolve("assets.zip"), zip);
        DirectoryObjectStore store = new DirectoryObjectStore(tmp.resolve("store"));
        Plan plan = prepare(file, store, "req-record-1");

        String recordUri = arg(plan.preprocess().command(), "--input-record");
        assertEquals(store.uri(Keys.inputRecord("req-record-1")), recordUri);
        JsonNode record = Json.MAPPER.readTree(Files.readAllBytes(Path.of(recordUri)));
        assertEquals(zip.length, record.get("bytes").asLong());
        assertEquals(HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(zip)),
                record.get("sha256").asText());
        assertEquals(4, record.get("entries").asInt());
        assertEquals(8 + 3 + 4 + 2, record.get("declared_bytes").asLong());
        assertEquals(List.of("a.GLB", "b/chair.obj"), Json.MAPPER.convertValue(record.get("objects"), List.class));
        // The dataset key is that sha256's: what the worker checks is what the cache is keyed by.
        assertEquals(Preparer.datasetKey(record.get("sha256").asText(), 512, "tiny"), plan.datasetKey());
        assertFalse(plan.stages().get(0).command().contains("--dataset-record"));
    }

    @Test
    void aUsersPreprocessedDatasetIsPinnedForEveryTrainingJob() throws Exception {
        Path file = TestZips.write(tmp.resolve("ds.zip"), TestZips.preprocessed(512, 3));
        DirectoryObjectStore store = new DirectoryObjectStore(tmp.resolve("store"));
        Plan plan = prepare(file, store, "req-record-2");
        assertNull(plan.preprocess());
        List<String> train = plan.stages().get(0).command();
        JsonNode record = Json.MAPPER.readTree(Files.readAllBytes(Path.of(arg(train, "--dataset-record"))));
        assertEquals(Files.size(file), record.get("bytes").asLong());
        assertFalse(record.has("objects"), "a dataset's objects are listed in prepared_dataset.json, not checked");
    }

    @Test
    void locallyADatasetWhoseServerIgnoresRangeIsStagedBesideTheRequestAndTrainedFromThere() throws Exception {
        byte[] dataset = TestZips.preprocessed(512, 3);
        DirectoryObjectStore store = new DirectoryObjectStore(tmp.resolve("store"));
        String id = "req-record-3";
        try (var server = new TestHttpsServer();
             var http = new SafeHttp(new AddressPolicy(true, false), TestHttpsServer.clientContext())) {
            String url = server.serveWhole("/ds.zip", dataset);
            var request = new RequestValidator(RequestValidator.Mode.LOCAL).parse("{\"data_url\": \"" + url + "\"}");
            ArchiveOpener opener = new ArchiveOpener(null, http);
            Assessment a = Assessment.of(request, opener, null);
            store.write(StorageLayout.requestJson(id), Json.pretty(new StoredRequest(id, "t", null, a.request(),
                    a.inputUri(), a.inspection(), a.estimate())).getBytes(StandardCharsets.UTF_8), "application/json");
            Plan plan = new Preparer(store, opener, "tiny", List.of())
                    .prepare(Json.MAPPER.readTree("{\"request_id\": \"" + id + "\"}"));
            Path staged = store.path(StorageLayout.stagedInput(id));
            assertArrayEquals(dataset, Files.readAllBytes(staged));
            List<String> train = plan.stages().get(0).command();
            assertEquals(staged.toString(), arg(train, "--dataset"));
            JsonNode record = Json.MAPPER.readTree(Files.readAllBytes(Path.of(arg(train, "--dataset-record"))));
            assertEquals(staged.toString(), record.get("uri").asText());
            assertEquals(HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(dataset)),
                    record.get("sha256").asText());
        }
    }
}
