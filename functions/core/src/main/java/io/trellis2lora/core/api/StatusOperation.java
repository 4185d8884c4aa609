package io.trellis2lora.core.api;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.Json;
import java.io.IOException;
import software.amazon.awssdk.services.sfn.model.DescribeExecutionResponse;
import software.amazon.awssdk.services.sfn.model.ExecutionStatus;
import software.amazon.awssdk.services.sfn.model.HistoryEvent;

/**
 * GET /requests/{request_id}/status: IN_QUEUE (no step entered yet, or every job of the request waiting in the Batch
 * queue: then with {@code queue_position}, the jobs ahead of it), IN_PROGRESS with the current step, COMPLETED,
 * CANCELLED, or FAILED with the execution's error and cause. {@code ?logs=1} adds {@code logs}, the recent lines of
 * the request's running jobs (bounded, see {@link JobQueueView}), as the hosted queue does.
 */
public final class StatusOperation extends ApiOperation {
    /** Null where no job queue is configured: no queue_position, no logs. */
    private final JobQueueView jobs;

    public StatusOperation(Services services) {
        this(services, null);
    }

    public StatusOperation(Services services, JobQueueView jobs) {
        super(services);
        this.jobs = jobs;
    }

    @Override
    protected ApiResponse process(ApiRequest request) throws IOException {
        String id = requestId(request);
        String logsParam = request.queryParameter("logs");
        boolean withLogs = "1".equals(logsParam) || "true".equalsIgnoreCase(logsParam);
        ObjectNode out = Json.MAPPER.createObjectNode();
        out.put("request_id", id);
        DescribeExecutionResponse d = ExecutionLookup.describe(services, id);
        if (d == null) {
            if (!ExecutionLookup.requestStored(services, id)) {
                return ExecutionLookup.notFound(id);
            }
            out.put("status", "IN_QUEUE");
            logs(out, withLogs, null, id);
            return ApiResponse.json(200, out);
        }
        if (d.status() == ExecutionStatus.RUNNING) {
            String step = currentStep(d.executionArn());
            JobQueueView.Standing standing = step == null || jobs == null ? null : standing(id);
            boolean queued = step == null || (standing != null && standing.queued());
            out.put("status", queued ? "IN_QUEUE" : "IN_PROGRESS");
            if (standing != null && standing.queued()) {
                out.put("queue_position", standing.waitingAhead());
            }
            if (step != null) {
                out.put("step", step);
            }
            logs(out, withLogs, standing, id);
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

    /** The Batch view is extra: when Batch cannot be asked, the status is still answered, without it. */
    private JobQueueView.Standing standing(String id) {
        try {
            return jobs.standing(id);
        } catch (software.amazon.awssdk.core.exception.SdkException e) {
            System.err.println("status of " + id + ": no Batch queue view: " + e.getMessage());
            return null;
        }
    }

    /** With ?logs=1: the running jobs' recent lines (none while nothing runs). */
    private void logs(ObjectNode out, boolean wanted, JobQueueView.Standing standing, String id) {
        if (wanted) {
            java.util.List<JobQueueView.LogLine> lines = java.util.List.of();
            try {
                lines = standing == null ? lines : jobs.logs(standing, id);
            } catch (software.amazon.awssdk.core.exception.SdkException e) {
                System.err.println("status of " + id + ": no log lines: " + e.getMessage());
            }
            out.set("logs", Json.MAPPER.valueToTree(lines));
        }
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
