package io.trellis2lora.functions.cancel;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import io.trellis2lora.core.api.ApiGatewayProxy;
import io.trellis2lora.core.api.CancelOperation;
import io.trellis2lora.core.api.Services;
import java.util.Map;

/** PUT /requests/{request_id}/cancel: stops a running execution; a finished one answers 409. */
public class CancelFunction implements RequestHandler<Map<String, Object>, Map<String, Object>> {
    private final CancelOperation operation;

    /** What Lambda runs: settings from the environment, AWS clients from the default chain. */
    public CancelFunction() {
        this(new CancelOperation(Services.fromEnvironment()));
    }

    public CancelFunction(CancelOperation operation) {
        this.operation = operation;
    }

    @Override
    public Map<String, Object> handleRequest(Map<String, Object> event, Context context) {
        return ApiGatewayProxy.handle(event, operation);
    }
}
