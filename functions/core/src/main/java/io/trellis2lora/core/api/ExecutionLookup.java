package io.trellis2lora.core.api;

import io.trellis2lora.core.storage.StorageLayout;
import software.amazon.awssdk.services.s3.model.NoSuchKeyException;
import software.amazon.awssdk.services.s3.model.S3Exception;
import software.amazon.awssdk.services.sfn.model.DescribeExecutionResponse;
import software.amazon.awssdk.services.sfn.model.ExecutionDoesNotExistException;

/** Finds a request's execution (named by the request id) and whether the request exists at all. */
final class ExecutionLookup {
    private ExecutionLookup() {
    }

    /** Null when no execution has that name. */
    static DescribeExecutionResponse describe(Services services, String requestId) {
        try {
            return services.sfn().describeExecution(b -> b.executionArn(services.config().executionArn(requestId)));
        } catch (ExecutionDoesNotExistException e) {
            return null;
        }
    }

    static boolean requestStored(Services services, String requestId) {
        try {
            services.s3().headObject(b -> b.bucket(services.config().requestsBucket())
                    .key(StorageLayout.requestJson(requestId)));
            return true;
        } catch (NoSuchKeyException e) {
            return false;
        } catch (S3Exception e) {
            if (e.statusCode() == 404) {
                return false;
            }
            throw e;
        }
    }

    static ApiResponse notFound(String requestId) {
        return ApiResponse.error(404, "no request with id " + requestId);
    }

    /** The public name of a finished execution's state. */
    static String publicStatus(DescribeExecutionResponse d) {
        return switch (d.status()) {
            case RUNNING, PENDING_REDRIVE -> "IN_PROGRESS";
            case SUCCEEDED -> "COMPLETED";
            case ABORTED -> "CANCELLED";
            default -> "FAILED";
        };
    }
}
