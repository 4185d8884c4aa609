package io.trellis2lora.functions.status;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.JobQueueView;
import io.trellis2lora.core.api.Services;
import io.trellis2lora.core.api.StatusOperation;
import io.trellis2lora.core.testing.Moto;
import io.trellis2lora.core.testing.TestServices;
import java.util.List;
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

    /** The Batch queue as the status op lists it: these jobs, and one log line per running job. */
    static JobQueueView queue(List<JobQueueView.Job> jobs) {
        return new JobQueueView(new JobQueueView.Source() {
            @Override
            public List<JobQueueView.Job> named(String prefix) {
                return jobs.stream().filter(j -> j.name().startsWith(prefix)).toList();
            }

            @Override
            public List<JobQueueView.Job> inState(String status, int limit) {
                return jobs.stream().filter(j -> j.status().equals(status)).toList();
            }

            @Override
            public List<JobQueueView.LogLine> tail(JobQueueView.Job job, int limit) {
                return List.of(new JobQueueView.LogLine("step 10/1000 loss 0.41", "2026-01-01T00:00:01Z", null));
            }
        });
    }

    static JsonNode status(Services s, JobQueueView jobs, String id, Map<String, String> query) throws Exception {
        Map<String, Object> event = new java.util.HashMap<>(TestServices.get(id));
        event.put("queryStringParameters", query);
        var resp = new StatusFunction(new StatusOperation(s, jobs)).handleRequest(event, null);
        return Json.MAPPER.readTree((String) resp.get("body"));
    }

    @Test
    void aJobWaitingInTheBatchQueueIsInQueueWithItsPositionAndARunningOneShowsItsLogs() throws Exception {
        Services s = TestServices.create(TestServices.RUNNING_MACHINE);
        String id = start(s, "RUNNING");
        Thread.sleep(300);
        String mine = JobQueueView.jobNamePrefix(id);
        List<JobQueueView.Job> others = List.of(new JobQueueView.Job("o1", "trellis2-a-texture", "RUNNABLE", 10),
                new JobQueueView.Job("o2", "trellis2-b-preprocess", "RUNNABLE", 20),
                new JobQueueView.Job("o3", "trellis2-c-geometry", "RUNNING", 5));
        var waiting = new java.util.ArrayList<>(others);
        waiting.add(new JobQueueView.Job("m1", mine + "texture", "RUNNABLE", 30));
        JsonNode queued = status(s, queue(waiting), id, Map.of("logs", "1"));
        assertEquals("IN_QUEUE", queued.get("status").asText(), queued.toString());
        assertEquals(2, queued.get("queue_position").asInt());
        assertEquals("Train", queued.get("step").asText());
        assertEquals(0, queued.get("logs").size());

        var running = new java.util.ArrayList<>(others);
        running.add(new JobQueueView.Job("m1", mine + "texture", "RUNNING", 30));
        JsonNode progress = status(s, queue(running), id, Map.of("logs", "1"));
        assertEquals("IN_PROGRESS", progress.get("status").asText());
        assertFalse(progress.has("queue_position"));
        assertEquals("step 10/1000 loss 0.41", progress.at("/logs/0/message").asText());
        assertEquals("2026-01-01T00:00:01Z", progress.at("/logs/0/timestamp").asText());
        assertEquals("texture", progress.at("/logs/0/stage").asText());
        // Without ?logs=1 no lines are fetched or shown.
        assertFalse(status(s, queue(running), id, Map.of()).has("logs"));
    }

    @Test
    void whenBatchCannotBeAskedTheStatusIsStillAnswered() throws Exception {
        Services s = TestServices.create(TestServices.RUNNING_MACHINE);
        String id = start(s, "RUNNING");
        Thread.sleep(300);
        JobQueueView broken = new JobQueueView(new JobQueueView.Source() {
            @Override
            public List<JobQueueView.Job> named(String prefix) {
                throw software.amazon.awssdk.core.exception.SdkClientException.create("AccessDenied: batch:ListJobs");
            }

            @Override
            public List<JobQueueView.Job> inState(String status, int limit) {
                return List.of();
            }

            @Override
            public List<JobQueueView.LogLine> tail(JobQueueView.Job job, int limit) {
                return List.of();
            }
        });
        JsonNode b = status(s, broken, id, Map.of("logs", "1"));
        assertEquals("IN_PROGRESS", b.get("status").asText(), b.toString());
        assertEquals("Train", b.get("step").asText());
        assertEquals(0, b.get("logs").size());
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
