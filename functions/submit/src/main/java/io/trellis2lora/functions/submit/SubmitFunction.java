package io.trellis2lora.functions.submit;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import io.trellis2lora.core.api.ApiGatewayProxy;
import io.trellis2lora.core.api.SubmitOperation;
import io.trellis2lora.core.api.Services;
import java.util.Map;

/** POST /requests: validate, inspect the archive with ranged reads, price, store request.json and start the state machine execution named by the request id. */
public class SubmitFunction implements RequestHandler<Map<String, Object>, Map<String, Object>> {
    private final SubmitOperation operation;

    /** What Lambda runs: settings from the environment, AWS clients from the default chain. */
    public SubmitFunction() {
        this(new SubmitOperation(Services.fromEnvironment()));
    }

    public SubmitFunction(SubmitOperation operation) {
        this.operation = operation;
    }

    @Override
    public Map<String, Object> handleRequest(Map<String, Object> event, Context context) {
        return ApiGatewayProxy.handle(event, operation);
    }
}
