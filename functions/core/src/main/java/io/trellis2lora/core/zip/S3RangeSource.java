package io.trellis2lora.core.zip;

import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.storage.S3ObjectStore;
import io.trellis2lora.core.storage.S3Uri;
import java.io.IOException;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.model.S3Exception;

/** An S3 object read with ranged reads, through the object store of its bucket. */
public final class S3RangeSource implements RangeSource {
    private final S3ObjectStore store;
    private final S3Uri uri;
    private final long size;
    private int reads;

    public S3RangeSource(S3Client s3, S3Uri uri) {
        this.store = new S3ObjectStore(s3, uri.bucket());
        this.uri = uri;
        long found;
        try {
            found = store.size(uri.key());
        } catch (S3Exception e) {
            if (e.statusCode() == 403) {
                throw new InputRefusedException("data_url " + uri + " cannot be read by the service (access denied)");
            }
            throw e;
        }
        if (found < 0) {
            throw new InputRefusedException("data_url " + uri + " does not exist");
        }
        this.size = found;
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public byte[] read(long offset, int length) throws IOException {
        requireWithin(offset, length);
        if (length == 0) {
            return new byte[0];
        }
        reads++;
        return store.readRange(uri.key(), offset, length);
    }

    @Override
    public String describe() {
        return uri.toString();
    }

    @Override
    public int readCount() {
        return reads;
    }
}
