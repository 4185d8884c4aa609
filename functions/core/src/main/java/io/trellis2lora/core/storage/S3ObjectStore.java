package io.trellis2lora.core.storage;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.NoSuchFileException;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.model.CompletedPart;
import software.amazon.awssdk.services.s3.model.NoSuchKeyException;
import software.amazon.awssdk.services.s3.model.S3Exception;

/** One bucket: a missing key is an empty answer (or -1 for a size), any other S3 error stays an error. */
public final class S3ObjectStore implements ObjectStore {
    /** A streamed write's part size: a body shorter than one part is one PUT, a longer one a multipart upload. */
    public static final int PART = 16 * 1024 * 1024;

    private final S3Client s3;
    private final String bucket;

    public S3ObjectStore(S3Client s3, String bucket) {
        this.s3 = s3;
        this.bucket = bucket;
    }

    public S3Client client() {
        return s3;
    }

    public String bucket() {
        return bucket;
    }

    @Override
    public String uri(String key) {
        return new S3Uri(bucket, key).toString();
    }

    @Override
    public Optional<String> keyOf(String uri) {
        if (!S3Uri.isS3(uri)) {
            return Optional.empty();
        }
        S3Uri u = S3Uri.parse(uri);
        return u.bucket().equals(bucket) ? Optional.of(u.key()) : Optional.empty();
    }

    @Override
    public Optional<byte[]> read(String key) {
        try {
            return Optional.of(s3.getObjectAsBytes(b -> b.bucket(bucket).key(key)).asByteArray());
        } catch (S3Exception e) {
            return absent(e, Optional.empty());
        }
    }

    @Override
    public void write(String key, byte[] data, String contentType) {
        s3.putObject(b -> b.bucket(bucket).key(key).contentType(contentType), RequestBody.fromBytes(data));
    }

    /** S3's conditional write (If-None-Match: *): 412 when the key exists. */
    @Override
    public boolean create(String key, byte[] data, String contentType) {
        try {
            s3.putObject(b -> b.bucket(bucket).key(key).contentType(contentType).ifNoneMatch("*"),
                    RequestBody.fromBytes(data));
            return true;
        } catch (S3Exception e) {
            // 409 is S3's answer when a conditional write races another one still in progress.
            if (e.statusCode() == 412 || e.statusCode() == 409) {
                return false;
            }
            throw e;
        }
    }

    @Override
    public long size(String key) {
        try {
            return s3.headObject(b -> b.bucket(bucket).key(key)).contentLength();
        } catch (S3Exception e) {
            return absent(e, -1L);
        }
    }

    @Override
    public void delete(String key) {
        s3.deleteObject(b -> b.bucket(bucket).key(key));
    }

    /** One GetObject with a Range header. */
    @Override
    public byte[] readRange(String key, long offset, int length) throws IOException {
        if (length == 0) {
            return new byte[0];
        }
        byte[] data;
        try {
            data = s3.getObjectAsBytes(b -> b.bucket(bucket).key(key)
                    .range("bytes=" + offset + "-" + (offset + length - 1))).asByteArray();
        } catch (S3Exception e) {
            throw absent(e, new NoSuchFileException(uri(key)));
        }
        if (data.length != length) {
            throw new EOFException("S3 returned " + data.length + " bytes for a " + length + "-byte range of "
                    + uri(key));
        }
        return data;
    }

    /** Never more than one part in memory; a failed multipart upload is aborted, so no part is left to bill. */
    @Override
    public void write(String key, InputStream body, String contentType) throws IOException {
        byte[] first = body.readNBytes(PART);
        if (first.length < PART) {
            s3.putObject(b -> b.bucket(bucket).key(key).contentType(contentType), RequestBody.fromBytes(first));
            return;
        }
        String uploadId = s3.createMultipartUpload(b -> b.bucket(bucket).key(key).contentType(contentType))
                .uploadId();
        try {
            List<CompletedPart> parts = new ArrayList<>();
            for (byte[] part = first; part.length > 0; part = body.readNBytes(PART)) {
                final int n = parts.size() + 1;
                final byte[] bytes = part;
                String etag = s3.uploadPart(b -> b.bucket(bucket).key(key).uploadId(uploadId).partNumber(n),
                        RequestBody.fromBytes(bytes)).eTag();
                parts.add(CompletedPart.builder().partNumber(n).eTag(etag).build());
            }
            s3.completeMultipartUpload(b -> b.bucket(bucket).key(key).uploadId(uploadId)
                    .multipartUpload(m -> m.parts(parts)));
        } catch (RuntimeException | IOException e) {
            s3.abortMultipartUpload(b -> b.bucket(bucket).key(key).uploadId(uploadId));
            throw e;
        }
    }

    // HEAD answers a bare 404 rather than NoSuchKey, so both mean "absent".
    private static <T> T absent(S3Exception e, T empty) {
        if (e instanceof NoSuchKeyException || e.statusCode() == 404) {
            return empty;
        }
        throw e;
    }
}
