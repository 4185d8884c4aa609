package io.trellis2lora.core.api;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.Json;
import software.amazon.awssdk.services.sfn.model.DescribeExecutionResponse;
import software.amazon.awssdk.services.sfn.model.ExecutionStatus;

/** PUT /requests/{request_id}/cancel: stops a running execution; a finished one answers 409 with its status. */
public final class CancelOperation extends ApiOperation {
    public CancelOperation(Services services) {
        super(services);
    }

    @Override
    protected ApiResponse process(ApiRequest request) {
        String id = requestId(request);
        DescribeExecutionResponse d = ExecutionLookup.describe(services, id);
        if (d == null) {
            return ExecutionLookup.notFound(id);
        }
        ObjectNode out = Json.MAPPER.createObjectNode();
        out.put("request_id", id);
        if (d.status() != ExecutionStatus.RUNNING) {
            out.put("status", ExecutionLookup.publicStatus(d));
            out.put("error", "request " + id + " has already finished");
            return ApiResponse.json(409, out);
        }
        services.sfn().stopExecution(b -> b.executionArn(d.executionArn()).error("Cancelled")
                .cause("cancelled by the user"));
        out.put("status", "CANCELLATION_REQUESTED");
        return ApiResponse.json(202, out);
    }
}
