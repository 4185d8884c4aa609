package io.trellis2lora.core.storage;

import java.util.Optional;
import java.util.OptionalLong;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.model.NoSuchKeyException;
import software.amazon.awssdk.services.s3.model.S3Exception;

/** Reads of objects that may be absent: a missing key is an empty answer, any other S3 error stays an error. */
public final class S3Objects {
    private S3Objects() {
    }

    public static Optional<byte[]> read(S3Client s3, String bucket, String key) {
        try {
            return Optional.of(s3.getObjectAsBytes(b -> b.bucket(bucket).key(key)).asByteArray());
        } catch (S3Exception e) {
            return absent(e, Optional.empty());
        }
    }

    /** The object's size in bytes, or empty when there is no such object. */
    public static OptionalLong size(S3Client s3, String bucket, String key) {
        try {
            return OptionalLong.of(s3.headObject(b -> b.bucket(bucket).key(key)).contentLength());
        } catch (S3Exception e) {
            return absent(e, OptionalLong.empty());
        }
    }

    public static boolean exists(S3Client s3, String bucket, String key) {
        return size(s3, bucket, key).isPresent();
    }

    // HEAD answers a bare 404 rather than NoSuchKey, so both mean "absent".
    private static <T> T absent(S3Exception e, T empty) {
        if (e instanceof NoSuchKeyException || e.statusCode() == 404) {
            return empty;
        }
        throw e;
    }
}
