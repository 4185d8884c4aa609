package io.trellis2lora.functions.status;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import io.trellis2lora.core.api.ApiGatewayProxy;
import io.trellis2lora.core.api.JobQueueView;
import io.trellis2lora.core.api.StatusOperation;
import io.trellis2lora.core.api.Services;
import java.util.Map;

/**
 * GET /requests/{request_id}/status: IN_QUEUE (+ queue_position), IN_PROGRESS with the current step, COMPLETED,
 * CANCELLED or FAILED with its error; ?logs=1 adds the running jobs' recent lines.
 */
public class StatusFunction implements RequestHandler<Map<String, Object>, Map<String, Object>> {
    private final StatusOperation operation;

    /** What Lambda runs: settings from the environment, AWS clients from the default chain. */
    public StatusFunction() {
        this(new StatusOperation(Services.fromEnvironment(), JobQueueView.fromEnvironment(System::getenv)));
    }

    public StatusFunction(StatusOperation operation) {
        this.operation = operation;
    }

    @Override
    public Map<String, Object> handleRequest(Map<String, Object> event, Context context) {
        return ApiGatewayProxy.handle(event, operation);
    }
}
