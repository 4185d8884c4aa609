package io.trellis2lora.core.zip;

import java.io.Closeable;
import java.io.EOFException;
import java.io.IOException;

/** Random access to an archive that may live far away: a local file, an S3 object, or an https URL. */
public interface RangeSource extends Closeable {
    /** Total size in bytes. */
    long size() throws IOException;

    /** Exactly {@code length} bytes starting at {@code offset}; fails (never returns short) past the end. */
    byte[] read(long offset, int length) throws IOException;

    /** How the source is named in messages (its URL or path). */
    String describe();

    /** What a source that knows its size checks before asking for a range: past the end is an EOFException. */
    default void requireWithin(long offset, int length) throws IOException {
        if (offset < 0 || offset + length > size()) {
            throw new EOFException("read past the end of " + describe() + " at byte " + offset);
        }
    }

    /** How many ranged reads were made so far (the inspection promises a handful, not a download). */
    int readCount();

    @Override
    default void close() throws IOException {
    }
}
