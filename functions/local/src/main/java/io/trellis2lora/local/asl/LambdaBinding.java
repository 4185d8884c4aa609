package io.trellis2lora.local.asl;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Map;

/**
 * Task states whose Resource is a Lambda function ARN, answered by an in-process function. A thrown exception becomes
 * the error Step Functions reports for a Lambda function error: the exception type as Error, and as Cause the JSON
 * {errorMessage, errorType} the Lambda runtime sends.
 */
public final class LambdaBinding implements TaskBinding {
    /** A Lambda handler called in-process. */
    @FunctionalInterface
    public interface LocalFunction {
        JsonNode handle(JsonNode event) throws Exception;
    }

    private final Map<String, LocalFunction> functions;

    public LambdaBinding(Map<String, LocalFunction> functionsByArn) {
        this.functions = Map.copyOf(functionsByArn);
    }

    @Override
    public boolean handles(String resource) {
        return functions.containsKey(resource);
    }

    @Override
    public JsonNode invoke(TaskCall call) throws AslError, InterruptedException {
        try {
            return functions.get(call.resource()).handle(call.parameters());
        } catch (InterruptedException e) {
            throw e;
        } catch (Exception e) {
            ObjectNode cause = StateMachine.MAPPER.createObjectNode();
            cause.put("errorMessage", e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage());
            cause.put("errorType", e.getClass().getName());
            throw new AslError(e.getClass().getName(), cause.toString());
        }
    }
}
