package io.trellis2lora.core.storage;

import java.io.IOException;
import java.util.Optional;

/**
 * The one storage abstraction: keys (layout in {@link StorageLayout}) in an S3 bucket in the cloud, or in a directory
 * that stands in for it in local mode. {@link #uri} is what the worker is handed: s3://bucket/key, or an absolute path.
 */
public interface ObjectStore {
    String uri(String key);

    /** The key of a URI inside this store, or empty when it points elsewhere. */
    Optional<String> keyOf(String uri);

    Optional<byte[]> read(String key) throws IOException;

    void write(String key, byte[] data, String contentType) throws IOException;

    /**
     * Writes {@code key} only if nothing is stored there yet, in one step (two writers racing: one wins).
     *
     * @return false when an object was already there (it is left as it was)
     */
    boolean create(String key, byte[] data, String contentType) throws IOException;

    /** Size in bytes, or -1 when there is no such object. */
    long size(String key) throws IOException;

    void delete(String key) throws IOException;

    default boolean exists(String key) throws IOException {
        return size(key) >= 0;
    }
}
