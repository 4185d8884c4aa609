package io.trellis2lora.core.storage;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.trellis2lora.core.testing.Moto;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/** create() writes only where nothing is stored yet, on S3 (moto) as in a directory; the first writer's bytes stay. */
@ExtendWith(Moto.class)
class ObjectStoreTest {
    @TempDir
    Path tmp;

    private static void createsOnce(ObjectStore store) throws Exception {
        String key = "requests/r1/request.json";
        assertTrue(store.create(key, "first".getBytes(StandardCharsets.UTF_8), "application/json"));
        assertFalse(store.create(key, "second".getBytes(StandardCharsets.UTF_8), "application/json"));
        assertArrayEquals("first".getBytes(StandardCharsets.UTF_8), store.read(key).orElseThrow());
        store.write(key, "third".getBytes(StandardCharsets.UTF_8), "application/json");  // write still replaces
        assertArrayEquals("third".getBytes(StandardCharsets.UTF_8), store.read(key).orElseThrow());
    }

    @Test
    void s3CreatesOnlyAnAbsentKey() throws Exception {
        var s3 = Moto.s3();
        createsOnce(new S3ObjectStore(s3, Moto.newBucket(s3)));
    }

    @Test
    void directoryCreatesOnlyAnAbsentKeyAndLeavesNoTemporaryFile() throws Exception {
        DirectoryObjectStore store = new DirectoryObjectStore(tmp);
        createsOnce(store);
        try (var files = Files.list(store.path("requests/r1"))) {
            assertEquals(List.of("request.json"), files.map(p -> p.getFileName().toString()).toList());
        }
    }
}
