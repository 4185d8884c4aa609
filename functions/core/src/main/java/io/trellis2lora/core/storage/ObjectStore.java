package io.trellis2lora.core.storage;

import java.io.IOException;
import java.io.InputStream;
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

    /**
     * Bytes {@code [offset, offset + length)} of the object, read without fetching the rest (the zip inspection's
     * ranged reads).
     *
     * @throws java.nio.file.NoSuchFileException when there is no such object
     * @throws java.io.EOFException when the object ends before the range does
     */
    byte[] readRange(String key, long offset, int length) throws IOException;

    /**
     * Writes {@code body} to {@code key} without holding it whole (a staged archive may be gigabytes); when reading
     * {@code body} fails (or its reader throws to stop it), {@code key} is left as it was, with no part stored.
     */
    void write(String key, InputStream body, String contentType) throws IOException;

    default boolean exists(String key) throws IOException {
        return size(key) >= 0;
    }
}
