package io.trellis2lora.core.storage;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.trellis2lora.core.testing.Moto;
import java.io.ByteArrayInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.SequenceInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * create() writes only where nothing is stored yet, on S3 (moto) as in a directory; the first writer's bytes stay.
 * Ranged reads give exactly the bytes asked for; a streamed write whose body fails leaves the key as it was.
 */
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

    private static void readsRangesAndStreams(ObjectStore store) throws Exception {
        byte[] data = "0123456789".getBytes(StandardCharsets.UTF_8);
        store.write("in/a.bin", new ByteArrayInputStream(data), "application/octet-stream");
        assertArrayEquals("345".getBytes(StandardCharsets.UTF_8), store.readRange("in/a.bin", 3, 3));
        assertArrayEquals(data, store.readRange("in/a.bin", 0, 10));
        assertThrows(EOFException.class, () -> store.readRange("in/a.bin", 8, 5));
        assertThrows(NoSuchFileException.class, () -> store.readRange("in/none.bin", 0, 1));
        InputStream broken = new SequenceInputStream(new ByteArrayInputStream("new".getBytes(StandardCharsets.UTF_8)),
                new InputStream() {
                    @Override
                    public int read() throws IOException {
                        throw new IOException("connection reset");
                    }
                });
        assertThrows(IOException.class, () -> store.write("in/a.bin", broken, "application/octet-stream"));
        assertArrayEquals(data, store.read("in/a.bin").orElseThrow());
    }

    /** No temporary file is left beside the one stored. */
    private static void assertOnlyFile(DirectoryObjectStore store, String folder, String name) throws IOException {
        try (var files = Files.list(store.path(folder))) {
            assertEquals(List.of(name), files.map(p -> p.getFileName().toString()).toList());
        }
    }

    @Test
    void s3ReadsRangesAndStreamsWrites() throws Exception {
        var s3 = Moto.s3();
        readsRangesAndStreams(new S3ObjectStore(s3, Moto.newBucket(s3)));
    }

    @Test
    void directoryReadsRangesAndStreamsWritesLeavingNoTemporaryFile() throws Exception {
        DirectoryObjectStore store = new DirectoryObjectStore(tmp);
        readsRangesAndStreams(store);
        assertOnlyFile(store, "in", "a.bin");
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
        assertOnlyFile(store, "requests/r1", "request.json");
    }
}
