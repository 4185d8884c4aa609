package io.trellis2lora.core.zip;

import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.storage.ObjectStore;
import io.trellis2lora.core.storage.S3ObjectStore;
import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.Locale;
import software.amazon.awssdk.services.s3.S3Client;

/**
 * Streams an archive into the requests bucket through its {@link ObjectStore} (a multipart upload there, never
 * holding more than one part), stopping with a refusal past the archive limit.
 */
public final class S3Stager implements Stager {
    static final int PART = S3ObjectStore.PART;

    private final ObjectStore store;
    private final String key;
    private final long limit;

    public S3Stager(S3Client s3, String bucket, String key) {
        this(new S3ObjectStore(s3, bucket), key, ZipInspector.MAX_ARCHIVE_BYTES);
    }

    /** @param limit bytes after which the copy stops with a refusal (tests use a small one) */
    S3Stager(S3Client s3, String bucket, String key, long limit) {
        this(new S3ObjectStore(s3, bucket), key, limit);
    }

    private S3Stager(ObjectStore store, String key, long limit) {
        this.store = store;
        this.key = key;
        this.limit = limit;
    }

    @Override
    public String stage(InputStream body, String sourceName) throws IOException {
        store.write(key, new Limited(body, limit, sourceName), "application/zip");
        return store.uri(key);
    }

    @Override
    public void discard(String uri) throws IOException {
        store.delete(store.keyOf(uri).orElseThrow(() -> new IllegalArgumentException(uri + " was not staged here")));
    }

    /** Throws the refusal from inside the store's read once more than {@code limit} bytes have come through. */
    private static final class Limited extends FilterInputStream {
        private final long limit;
        private final String sourceName;
        private long total;

        Limited(InputStream in, long limit, String sourceName) {
            super(in);
            this.limit = limit;
            this.sourceName = sourceName;
        }

        @Override
        public int read() throws IOException {
            int b = super.read();
            count(b < 0 ? 0 : 1);
            return b;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            int n = super.read(b, off, len);
            count(Math.max(n, 0));
            return n;
        }

        private void count(int n) {
            total += n;
            if (total > limit) {
                throw new InputRefusedException(String.format(Locale.ROOT,
                        "archive at %s is over the %,d MB limit", sourceName, limit / (1024 * 1024)));
            }
        }
    }
}
