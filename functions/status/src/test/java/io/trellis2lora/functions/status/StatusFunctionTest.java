package io.trellis2lora.functions.status;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.Services;
import io.trellis2lora.core.api.StatusOperation;
import io.trellis2lora.core.testing.Moto;
import io.trellis2lora.core.testing.TestServices;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import software.amazon.awssdk.core.sync.RequestBody;

@ExtendWith(Moto.class)
class StatusFunctionTest {

    /** Starts an execution named by a new request id, as submit does, and waits until it leaves its first state. */
    static String start(Services s, String expectedStatus) throws InterruptedException {
        String id = UUID.randomUUID().toString();
        s.sfn().startExecution(b -> b.stateMachineArn(s.config().stateMachineArn()).name(id).input("{}"));
        for (int i = 0; i < 100; i++) {
            var d = s.sfn().describeExecution(b -> b.executionArn(s.config().executionArn(id)));
            if (d.statusAsString().equals(expectedStatus)) {
                break;
            }
            Thread.sleep(50);
        }
        return id;
    }

    static JsonNode status(Services s, String id) throws Exception {
        var resp = new StatusFunction(new StatusOperation(s)).handleRequest(TestServices.get(id), null);
        JsonNode body = Json.MAPPER.readTree((String) resp.get("body"));
        ((com.fasterxml.jackson.databind.node.ObjectNode) body).put("_code", (Integer) resp.get("statusCode"));
        return body;
    }

    @Test
    void runningExecutionIsInProgressWithItsCurrentStep() throws Exception {
        Services s = TestServices.create(TestServices.RUNNING_MACHINE);
        String id = start(s, "RUNNING");
        Thread.sleep(300);
        JsonNode b = status(s, id);
        assertEquals(200, b.get("_code").asInt());
        assertEquals("IN_PROGRESS", b.get("status").asText());
        assertEquals("Train", b.get("step").asText());
        assertEquals(id, b.get("request_id").asText());
    }

    @Test
    void storedRequestWithoutExecutionYetIsInQueue() throws Exception {
        Services s = TestServices.create(TestServices.RUNNING_MACHINE);
        String id = UUID.randomUUID().toString();
        s.s3().putObject(b -> b.bucket(s.config().requestsBucket()).key("requests/" + id + "/request.json"),
                RequestBody.fromString("{}"));
        assertEquals("IN_QUEUE", status(s, id).get("status").asText());
    }

    @Test
    void succeededExecutionIsCompletedWithItsResponseUrl() throws Exception {
        Services s = TestServices.create(TestServices.SUCCEEDING_MACHINE);
        String id = start(s, "SUCCEEDED");
        JsonNode b = status(s, id);
        assertEquals("COMPLETED", b.get("status").asText());
        assertEquals(TestServices.BASE_URL + "/requests/" + id, b.get("response_url").asText());
    }

    @Test
    void failedExecutionReportsItsError() throws Exception {
        Services s = TestServices.create(TestServices.FAILING_MACHINE);
        String id = start(s, "FAILED");
        JsonNode b = status(s, id);
        assertEquals("FAILED", b.get("status").asText());
        assertEquals("AllStagesFailed", b.get("error").asText());
        assertEquals("every stage failed", b.get("cause").asText());
    }

    @Test
    void stoppedExecutionIsCancelled() throws Exception {
        Services s = TestServices.create(TestServices.RUNNING_MACHINE);
        String id = start(s, "RUNNING");
        s.sfn().stopExecution(b -> b.executionArn(s.config().executionArn(id)));
        assertEquals("CANCELLED", status(s, id).get("status").asText());
    }

    @Test
    void unknownAndMalformedIdsAreClientErrors() throws Exception {
        Services s = TestServices.create(TestServices.RUNNING_MACHINE);
        assertEquals(404, status(s, UUID.randomUUID().toString()).get("_code").asInt());
        assertEquals(400, status(s, "../../etc").get("_code").asInt());
        assertEquals(400, status(s, null).get("_code").asInt());
        assertEquals(400, new StatusFunction(new StatusOperation(s)).handleRequest(Map.of(), null).get("statusCode"));
    }
}
