package io.trellis2lora.core.zip;

import java.io.Closeable;
import java.io.IOException;

/** Random access to an archive that may live far away: a local file, an S3 object, or an https URL. */
public interface RangeSource extends Closeable {
    /** Total size in bytes. */
    long size() throws IOException;

    /** Exactly {@code length} bytes starting at {@code offset}; fails (never returns short) past the end. */
    byte[] read(long offset, int length) throws IOException;

    /** How the source is named in messages (its URL or path). */
    String describe();

    /** How many ranged reads were made so far (the inspection promises a handful, not a download). */
    int readCount();

    @Override
    default void close() throws IOException {
    }
}
