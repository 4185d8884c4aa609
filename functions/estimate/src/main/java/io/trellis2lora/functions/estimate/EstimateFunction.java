package io.trellis2lora.functions.estimate;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import io.trellis2lora.core.api.ApiGatewayProxy;
import io.trellis2lora.core.api.EstimateOperation;
import io.trellis2lora.core.api.Services;
import java.util.Map;

/** POST /estimate: the checks and the price of a submit, starting nothing. */
public class EstimateFunction implements RequestHandler<Map<String, Object>, Map<String, Object>> {
    private final EstimateOperation operation;

    /** What Lambda runs: settings from the environment, AWS clients from the default chain. */
    public EstimateFunction() {
        this(new EstimateOperation(Services.fromEnvironment()));
    }

    public EstimateFunction(EstimateOperation operation) {
        this.operation = operation;
    }

    @Override
    public Map<String, Object> handleRequest(Map<String, Object> event, Context context) {
        return ApiGatewayProxy.handle(event, operation);
    }
}
