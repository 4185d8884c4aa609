package io.trellis2lora.core.zip;

import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.storage.S3Uri;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.model.CompletedPart;

/** Streams an archive into the requests bucket with a multipart upload, never holding more than one part. */
public final class S3Stager implements Stager {
    static final int PART = 16 * 1024 * 1024;

    private final S3Client s3;
    private final String bucket;
    private final String key;
    private final long limit;

    public S3Stager(S3Client s3, String bucket, String key) {
        this(s3, bucket, key, ZipInspector.MAX_ARCHIVE_BYTES);
    }

    /** @param limit bytes after which the copy stops with a refusal (tests use a small one) */
    S3Stager(S3Client s3, String bucket, String key, long limit) {
        this.s3 = s3;
        this.bucket = bucket;
        this.key = key;
        this.limit = limit;
    }

    @Override
    public String stage(InputStream body, String sourceName) throws IOException {
        byte[] first = body.readNBytes(PART);
        if (first.length > limit) {
            throw tooBig(sourceName);
        }
        if (first.length < PART) {
            s3.putObject(b -> b.bucket(bucket).key(key).contentType("application/zip"), RequestBody.fromBytes(first));
            return new S3Uri(bucket, key).toString();
        }
        String uploadId = s3.createMultipartUpload(b -> b.bucket(bucket).key(key).contentType("application/zip"))
                .uploadId();
        try {
            List<CompletedPart> parts = new ArrayList<>();
            long total = 0;
            byte[] part = first;
            int number = 1;
            while (part.length > 0) {
                total += part.length;
                if (total > limit) {
                    throw tooBig(sourceName);
                }
                final int n = number;
                final byte[] bytes = part;
                String etag = s3.uploadPart(b -> b.bucket(bucket).key(key).uploadId(uploadId).partNumber(n),
                        RequestBody.fromBytes(bytes)).eTag();
                parts.add(CompletedPart.builder().partNumber(n).eTag(etag).build());
                number++;
                part = body.readNBytes(PART);
            }
            s3.completeMultipartUpload(b -> b.bucket(bucket).key(key).uploadId(uploadId)
                    .multipartUpload(m -> m.parts(parts)));
            return new S3Uri(bucket, key).toString();
        } catch (RuntimeException | IOException e) {
            s3.abortMultipartUpload(b -> b.bucket(bucket).key(key).uploadId(uploadId));
            throw e;
        }
    }

    private InputRefusedException tooBig(String sourceName) {
        return new InputRefusedException(String.format(java.util.Locale.ROOT,
                "archive at %s is over the %,d MB limit", sourceName, limit / (1024 * 1024)));
    }

    @Override
    public void discard(String uri) {
        S3Uri u = S3Uri.parse(uri);
        s3.deleteObject(b -> b.bucket(u.bucket()).key(u.key()));
    }
}
