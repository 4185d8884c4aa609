package io.trellis2lora.functions.cancel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.trellis2lora.core.api.CancelOperation;
import io.trellis2lora.core.api.Services;
import io.trellis2lora.core.testing.Moto;
import io.trellis2lora.core.testing.TestServices;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import software.amazon.awssdk.services.sfn.model.ExecutionStatus;

@ExtendWith(Moto.class)
class CancelFunctionTest {

    static Map<String, Object> cancel(Services s, String id) {
        return new CancelFunction(new CancelOperation(s)).handleRequest(
                TestServices.event("PUT", null, Map.of(), Map.of("request_id", id)), null);
    }

    static String start(Services s) throws InterruptedException {
        String id = UUID.randomUUID().toString();
        s.sfn().startExecution(b -> b.stateMachineArn(s.config().stateMachineArn()).name(id).input("{}"));
        Thread.sleep(300);
        return id;
    }

    @Test
    void runningExecutionIsStopped() throws Exception {
        Services s = TestServices.create(TestServices.RUNNING_MACHINE);
        String id = start(s);
        var resp = cancel(s, id);
        assertEquals(202, resp.get("statusCode"), (String) resp.get("body"));
        assertEquals(ExecutionStatus.ABORTED, s.sfn().describeExecution(b -> b.executionArn(
                s.config().executionArn(id))).status());
        var again = cancel(s, id);
        assertEquals(409, again.get("statusCode"));
        assertTrue(((String) again.get("body")).contains("CANCELLED"), (String) again.get("body"));
    }

    @Test
    void finishedExecutionAnswersThatItHasFinished() throws Exception {
        Services s = TestServices.create(TestServices.SUCCEEDING_MACHINE);
        String id = start(s);
        var resp = cancel(s, id);
        assertEquals(409, resp.get("statusCode"));
        assertTrue(((String) resp.get("body")).contains("already finished"), (String) resp.get("body"));
        assertTrue(((String) resp.get("body")).contains("COMPLETED"), (String) resp.get("body"));
    }

    @Test
    void unknownRequestIsNotFound() {
        Services s = TestServices.create(TestServices.RUNNING_MACHINE);
        assertEquals(404, cancel(s, UUID.randomUUID().toString()).get("statusCode"));
        assertEquals(400, cancel(s, "..").get("statusCode"));
    }
}
