package io.trellis2lora.core.api;

import io.trellis2lora.core.storage.StorageLayout;
import java.io.IOException;
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

    static boolean requestStored(Services services, String requestId) throws IOException {
        return services.requests().exists(StorageLayout.requestJson(requestId));
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
