package io.trellis2lora.core.api;

import io.trellis2lora.core.model.TrainingResult;
import io.trellis2lora.core.storage.PresignedLinks;
import io.trellis2lora.core.storage.StorageLayout;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Optional;
import software.amazon.awssdk.services.sfn.model.DescribeExecutionResponse;

/** GET /requests/{request_id}: result.json with every s3:// file turned into a presigned https URL. */
public final class ResultOperation extends ApiOperation {
    public ResultOperation(Services services) {
        super(services);
    }

    @Override
    protected ApiResponse process(ApiRequest request) throws IOException {
        String id = requestId(request);
        Optional<byte[]> stored = services.requests().read(StorageLayout.resultJson(id));
        if (stored.isEmpty()) {
            return notReady(id);
        }
        String json = new String(stored.get(), StandardCharsets.UTF_8);
        TrainingResult result;
        try {
            result = new PresignedLinks(services.presigner(), services.config().presignTtl())
                    .of(TrainingResult.parse(json));
        } catch (io.trellis2lora.core.InputRefusedException e) {
            // result.json is written by the finalize step, not by the user: a broken one is our fault (500).
            throw new IllegalStateException("result.json of " + id + " is damaged: " + e.getMessage(), e);
        }
        return ApiResponse.json(200, result);
    }

    private ApiResponse notReady(String id) throws IOException {
        DescribeExecutionResponse d = ExecutionLookup.describe(services, id);
        if (d == null) {
            return ExecutionLookup.requestStored(services, id)
                    ? ApiResponse.error(409, "request " + id + " is still in the queue")
                    : ExecutionLookup.notFound(id);
        }
        String status = ExecutionLookup.publicStatus(d);
        return switch (status) {
            case "IN_PROGRESS" -> ApiResponse.error(409, "request " + id + " is still in progress");
            case "CANCELLED" -> ApiResponse.error(409, "request " + id + " was cancelled");
            case "FAILED" -> ApiResponse.error(409, "request " + id + " failed: "
                    + (d.error() == null ? "" : d.error()) + (d.cause() == null ? "" : " (" + d.cause() + ")"));
            default -> ApiResponse.error(500, "request " + id + " completed but left no result");
        };
    }
}
