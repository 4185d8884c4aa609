package io.trellis2lora.core.api;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.Json;
import java.io.IOException;
import software.amazon.awssdk.services.sfn.model.DescribeExecutionResponse;
import software.amazon.awssdk.services.sfn.model.ExecutionStatus;
import software.amazon.awssdk.services.sfn.model.HistoryEvent;

/**
 * GET /requests/{request_id}/status: IN_QUEUE (no step entered yet), IN_PROGRESS with the current step,
 * COMPLETED, CANCELLED, or FAILED with the execution's error and cause.
 */
public final class StatusOperation extends ApiOperation {
    public StatusOperation(Services services) {
        super(services);
    }

    @Override
    protected ApiResponse process(ApiRequest request) throws IOException {
        String id = requestId(request);
        ObjectNode out = Json.MAPPER.createObjectNode();
        out.put("request_id", id);
        DescribeExecutionResponse d = ExecutionLookup.describe(services, id);
        if (d == null) {
            if (!ExecutionLookup.requestStored(services, id)) {
                return ExecutionLookup.notFound(id);
            }
            out.put("status", "IN_QUEUE");
            return ApiResponse.json(200, out);
        }
        if (d.status() == ExecutionStatus.RUNNING) {
            String step = currentStep(d.executionArn());
            out.put("status", step == null ? "IN_QUEUE" : "IN_PROGRESS");
            if (step != null) {
                out.put("step", step);
            }
            return ApiResponse.json(200, out);
        }
        out.put("status", ExecutionLookup.publicStatus(d));
        if ("COMPLETED".equals(out.get("status").asText())) {
            out.put("response_url", baseUrl(request) + "/requests/" + id);
        } else if ("FAILED".equals(out.get("status").asText())) {
            out.put("error", d.error() == null ? d.status().toString() : d.error());
            if (d.cause() != null) {
                out.put("cause", d.cause());
            }
        }
        return ApiResponse.json(200, out);
    }

    /** The last state the execution entered (newest events first), or null before the first one. */
    private String currentStep(String executionArn) {
        var history = services.sfn().getExecutionHistory(b -> b.executionArn(executionArn).reverseOrder(true)
                .maxResults(100).includeExecutionData(false));
        // The newest entered state by event id, whatever order the events came back in.
        HistoryEvent newest = null;
        for (HistoryEvent e : history.events()) {
            if (e.typeAsString().endsWith("StateEntered") && e.stateEnteredEventDetails() != null
                    && (newest == null || e.id() > newest.id())) {
                newest = e;
            }
        }
        return newest == null ? null : newest.stateEnteredEventDetails().name();
    }
}
