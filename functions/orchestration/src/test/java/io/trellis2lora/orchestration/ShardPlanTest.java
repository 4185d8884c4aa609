package io.trellis2lora.orchestration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.Assessment;
import io.trellis2lora.core.api.StoredRequest;
import io.trellis2lora.core.storage.DirectoryObjectStore;
import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.core.testing.TestZips;
import io.trellis2lora.core.validation.RequestValidator;
import io.trellis2lora.core.zip.ArchiveOpener;
import io.trellis2lora.core.zip.TempFileStager;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Prepare cuts preprocessing into shards of the objects the worker would process, and plans the merge. */
class ShardPlanTest {
    @TempDir
    Path tmp;

    /**
     * Seven distinct objects picked by a manifest, plus a byte-identical copy of one (merged into it) and an object
     * the manifest leaves out.
     */
    private Path sevenObjects() throws Exception {
        List<TestZips.Forged> entries = new ArrayList<>();
        StringBuilder manifest = new StringBuilder("file,caption\n");
        for (int i = 1; i <= 7; i++) {
            entries.add(TestZips.Forged.file("o" + i + ".stl", "solid o" + i + "\n"));
            manifest.append("o").append(i).append(".stl,object ").append(i).append('\n');
        }
        entries.add(TestZips.Forged.file("x/o1.stl", "solid o1\n"));
        manifest.append("x/o1.stl,a copy\n");
        entries.add(TestZips.Forged.file("left-out.stl", "solid other\n"));
        entries.add(TestZips.Forged.file("manifest.csv", manifest.toString()));
        return TestZips.write(tmp.resolve("seven.zip"), TestZips.forge(entries, false));
    }

    private Plan prepare(Path zip, DirectoryObjectStore store, String id, Sharding sharding) throws Exception {
        var request = new RequestValidator(RequestValidator.Mode.LOCAL).parse("{\"data_url\": \""
                + zip.toString().replace("\\", "\\\\") + "\", \"denoisers\": [\"geometry\"]}");
        ArchiveOpener opener = new ArchiveOpener(null, null);
        Assessment a = Assessment.of(request, opener, new TempFileStager());
        store.write(StorageLayout.requestJson(id), Json.pretty(new StoredRequest(id, "t", null, a.request(),
                a.inputUri(), a.inspection(), a.estimate())).getBytes(StandardCharsets.UTF_8), "application/json");
        return new Preparer(store, opener, "tiny", List.of("--render-size", "64"), sharding).prepare(
                Json.MAPPER.readTree("{\"request_id\": \"" + id + "\"}"));
    }

    private static String arg(List<String> command, String flag) {
        return command.get(command.indexOf(flag) + 1);
    }

    @Test
    void sevenObjectsAtThreeAShardAreThreeShardsOfTheManifestsDistinctObjects() throws Exception {
        DirectoryObjectStore store = new DirectoryObjectStore(tmp.resolve("store"));
        Plan plan = prepare(sevenObjects(), store, "req-shards-1", new Sharding(3, 16));

        assertEquals(7, plan.objects());
        assertEquals(3, plan.preprocessShards());
        JsonNode stored = Json.MAPPER.readTree(store.read(Keys.shardPlan("req-shards-1")).orElseThrow());
        List<String> files = new ArrayList<>();
        stored.get("objects").forEach(o -> files.add(o.get("file").asText()));
        // o1.stl stands for its copy x/o1.stl (the first in path order, as the worker merges them); left-out.stl is
        // not in the manifest.
        assertEquals(List.of("o1.stl", "o2.stl", "o3.stl", "o4.stl", "o5.stl", "o6.stl", "o7.stl"), files);

        List<String> child = plan.preprocess().command();
        assertEquals("preprocess", child.get(0));
        assertEquals(store.uri(Keys.shardPlan("req-shards-1")), arg(child, "--objects-from"));
        assertEquals("3", arg(child, "--shard-count"));
        assertEquals("64", arg(child, "--render-size"));
        assertEquals(store.uri(Keys.inputRecord("req-shards-1")), arg(child, "--input-record"));
        assertTrue(arg(child, "--output").contains("{shard}") && arg(child, "--report").contains("{shard}"),
                "each child writes its own dataset and report: " + child);
        assertFalse(child.contains(plan.datasetUri()), "no child writes the dataset itself");

        List<String> merge = plan.merge().command();
        assertEquals("merge", merge.get(0));
        assertEquals(arg(child, "--objects-from"), arg(merge, "--plan"));
        assertEquals("3", arg(merge, "--shard-count"));
        assertEquals(arg(child, "--output"), arg(merge, "--shard-outputs"));
        assertEquals(arg(child, "--report"), arg(merge, "--shard-reports"));
        assertEquals(plan.datasetUri(), arg(merge, "--output"));
        // Finalize reads the one report where a single preprocess job writes it.
        assertEquals(store.uri(Keys.preprocessReport("req-shards-1")), arg(merge, "--report"));
        assertEquals("tiny", arg(merge, "--base"));
        assertEquals("512", arg(merge, "--resolution"));
    }

    @Test
    void oneShardAtMostIsTheSinglePreprocessJobOfBefore() throws Exception {
        DirectoryObjectStore store = new DirectoryObjectStore(tmp.resolve("store"));
        Plan plan = prepare(sevenObjects(), store, "req-shards-2", new Sharding(3, 1));
        assertEquals(1, plan.preprocessShards());
        assertNull(plan.merge());
        List<String> command = plan.preprocess().command();
        assertEquals(plan.datasetUri(), arg(command, "--output"));
        assertEquals(store.uri(Keys.preprocessReport("req-shards-2")), arg(command, "--report"));
        assertFalse(command.contains("--objects-from") || command.contains("--shard-count"));
        assertFalse(store.exists(Keys.shardPlan("req-shards-2")));
    }

    @Test
    void theShardCountFollowsTheSettings() {
        Sharding defaults = Sharding.fromEnvironment(name -> null);
        assertEquals(Sharding.DEFAULT_OBJECTS_PER_SHARD, defaults.objectsPerShard());
        assertEquals(1, defaults.shards(Sharding.DEFAULT_OBJECTS_PER_SHARD));
        assertEquals(2, defaults.shards(Sharding.DEFAULT_OBJECTS_PER_SHARD + 1));
        assertEquals(Sharding.DEFAULT_MAX_SHARDS, defaults.shards(10_000), "capped");
        Map<String, String> env = Map.of("TRELLIS2_OBJECTS_PER_SHARD", "3", "TRELLIS2_MAX_PREPROCESS_SHARDS", "2");
        assertEquals(2, Sharding.fromEnvironment(env::get).shards(7));
        assertEquals(2, Sharding.exactly(3).shards(2), "never an empty shard");
        assertEquals(3, Sharding.exactly(3).shards(29));
        assertThrows(IllegalStateException.class,
                () -> Sharding.fromEnvironment(Map.of("TRELLIS2_MAX_PREPROCESS_SHARDS", "0")::get));
        assertThrows(IllegalStateException.class,
                () -> Sharding.fromEnvironment(Map.of("TRELLIS2_OBJECTS_PER_SHARD", "many")::get));
    }
}
