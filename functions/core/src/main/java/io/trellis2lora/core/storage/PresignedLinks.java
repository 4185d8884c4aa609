package io.trellis2lora.core.storage;

import io.trellis2lora.core.model.FileRef;
import io.trellis2lora.core.model.TrainingResult;
import java.time.Duration;
import software.amazon.awssdk.services.s3.presigner.S3Presigner;

/**
 * The links a user is handed for a result's files: every {@code s3://} file object (lora_file, preview_file, every
 * other {@code *_file}, the dataset) becomes a presigned https GET URL that downloads under the file's name. The
 * result op and the webhook sender both sign here, at the moment they hand the result out, so each link lives its
 * full lifetime from then. Other URLs (local paths in local mode) are left as they are.
 */
public final class PresignedLinks {
    private final S3Presigner presigner;
    private final Duration ttl;

    public PresignedLinks(S3Presigner presigner, Duration ttl) {
        this.presigner = presigner;
        this.ttl = ttl;
    }

    public TrainingResult of(TrainingResult result) {
        return result.mapFiles(this::of);
    }

    public FileRef of(FileRef f) {
        if (f == null || !S3Uri.isS3(f.url())) {
            return f;
        }
        S3Uri u = S3Uri.parse(f.url());
        String url = presigner.presignGetObject(p -> p.signatureDuration(ttl).getObjectRequest(g -> {
            g.bucket(u.bucket()).key(u.key());
            if (f.fileName() != null) {
                g.responseContentDisposition("attachment; filename=\"" + f.fileName().replace("\"", "") + "\"");
            }
        })).url().toString();
        return f.withUrl(url);
    }
}
