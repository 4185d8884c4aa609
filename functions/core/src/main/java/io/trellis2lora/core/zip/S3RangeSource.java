package io.trellis2lora.core.zip;

import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.storage.S3Uri;
import java.io.EOFException;
import java.io.IOException;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.model.GetObjectRequest;
import software.amazon.awssdk.services.s3.model.HeadObjectResponse;
import software.amazon.awssdk.services.s3.model.NoSuchKeyException;
import software.amazon.awssdk.services.s3.model.S3Exception;

/** An S3 object read with GetObject Range requests. */
public final class S3RangeSource implements RangeSource {
    private final S3Client s3;
    private final S3Uri uri;
    private final long size;
    private int reads;

    public S3RangeSource(S3Client s3, S3Uri uri) {
        this.s3 = s3;
        this.uri = uri;
        HeadObjectResponse head;
        try {
            head = s3.headObject(b -> b.bucket(uri.bucket()).key(uri.key()));
        } catch (NoSuchKeyException e) {
            throw new InputRefusedException("data_url " + uri + " does not exist");
        } catch (S3Exception e) {
            if (e.statusCode() == 404) {
                throw new InputRefusedException("data_url " + uri + " does not exist");
            }
            if (e.statusCode() == 403) {
                throw new InputRefusedException("data_url " + uri + " cannot be read by the service (access denied)");
            }
            throw e;
        }
        this.size = head.contentLength();
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public byte[] read(long offset, int length) throws IOException {
        if (offset < 0 || offset + length > size) {
            throw new EOFException("read past the end of " + uri + " at byte " + offset);
        }
        if (length == 0) {
            return new byte[0];
        }
        reads++;
        GetObjectRequest req = GetObjectRequest.builder().bucket(uri.bucket()).key(uri.key())
                .range("bytes=" + offset + "-" + (offset + length - 1)).build();
        byte[] data = s3.getObjectAsBytes(req).asByteArray();
        if (data.length != length) {
            throw new EOFException("S3 returned " + data.length + " bytes for a " + length + "-byte range of " + uri);
        }
        return data;
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
