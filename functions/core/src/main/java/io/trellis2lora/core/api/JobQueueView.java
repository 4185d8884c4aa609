package io.trellis2lora.core.api;

import com.fasterxml.jackson.annotation.JsonProperty;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Set;
import java.util.function.Function;
import software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import software.amazon.awssdk.services.batch.BatchClient;
import software.amazon.awssdk.services.batch.model.JobDetail;
import software.amazon.awssdk.services.batch.model.JobSummary;
import software.amazon.awssdk.services.batch.model.KeyValuesPair;
import software.amazon.awssdk.services.cloudwatchlogs.CloudWatchLogsClient;
import software.amazon.awssdk.services.cloudwatchlogs.model.OutputLogEvent;
import software.amazon.awssdk.services.cloudwatchlogs.model.ResourceNotFoundException;

/**
 * Where a request stands in the Batch job queue, for the status op: its jobs (named {@code trellis2-<id>-<what>} by
 * Prepare) found by one name-filtered listing, the jobs waiting ahead of its first waiting one, and the recent log
 * lines of its running jobs. Every AWS call is bounded: listings stop after {@link #MAX_LISTED} jobs per state, logs
 * are the last {@link #MAX_LOG_LINES} lines and at most {@link #MAX_LOG_BYTES} of text.
 */
public final class JobQueueView {
    /** Batch's states before a job is placed on an instance; FIFO within the queue. */
    static final List<String> WAITING = List.of("SUBMITTED", "PENDING", "RUNNABLE");
    static final Set<String> ACTIVE = Set.of("STARTING", "RUNNING");
    static final int MAX_LISTED = 1000;
    public static final int MAX_LOG_LINES = 100;
    public static final int MAX_LOG_BYTES = 64 * 1024;
    /** CloudWatch events go to 256 KB; one line never takes the whole budget. */
    static final int MAX_LINE_CHARS = 4096;

    /** One Batch job as a listing shows it. */
    public record Job(String id, String name, String status, long createdAt) {
    }

    /** One log line as the hosted queue's status shows it; {@code stage} says which of the request's jobs wrote it. */
    public record LogLine(@JsonProperty("message") String message, @JsonProperty("timestamp") String timestamp,
            @JsonProperty("stage") String stage) {
    }

    /** The request's jobs: {@code waitingAhead} is null unless one of them waits and none is running. */
    public record Standing(List<Job> jobs, Integer waitingAhead) {
        public boolean queued() {
            return waitingAhead != null;
        }
    }

    /** The AWS calls, apart so that the position and bounding logic can be tested on a listing of one's choosing. */
    public interface Source {
        /** Every job of the queue whose name starts with {@code prefix}, any state. */
        List<Job> named(String prefix);

        /** The queue's jobs in {@code status}, at most {@code limit}. */
        List<Job> inState(String status, int limit);

        /** The last {@code limit} lines of the job's log, oldest first (none before it has a log stream). */
        List<LogLine> tail(Job job, int limit);
    }

    private final Source source;

    public JobQueueView(Source source) {
        this.source = source;
    }

    /** The view the status function gets: TRELLIS2_JOB_QUEUE and TRELLIS2_JOB_LOG_GROUP; null when unset. */
    public static JobQueueView fromEnvironment(Function<String, String> env) {
        String queue = env.apply("TRELLIS2_JOB_QUEUE");
        String logGroup = env.apply("TRELLIS2_JOB_LOG_GROUP");
        if (queue == null || queue.isBlank()) {
            return null;
        }
        return new JobQueueView(new Aws(
                BatchClient.builder().httpClientBuilder(UrlConnectionHttpClient.builder()).build(),
                CloudWatchLogsClient.builder().httpClientBuilder(UrlConnectionHttpClient.builder()).build(),
                queue.trim(), logGroup == null || logGroup.isBlank() ? null : logGroup.trim()));
    }

    /** How Prepare names a request's jobs ({@code trellis2-<id>-preprocess}, {@code trellis2-<id>-texture}, ...). */
    public static String jobNamePrefix(String requestId) {
        return "trellis2-" + requestId + "-";
    }

    public Standing standing(String requestId) {
        String prefix = jobNamePrefix(requestId);
        List<Job> mine = source.named(prefix).stream().filter(j -> j.name().startsWith(prefix)).toList();
        if (mine.stream().anyMatch(j -> ACTIVE.contains(j.status()))) {
            return new Standing(mine, null);
        }
        Job first = mine.stream().filter(j -> WAITING.contains(j.status()))
                .min(Comparator.comparingLong(Job::createdAt).thenComparing(Job::id)).orElse(null);
        if (first == null) {
            return new Standing(mine, null);
        }
        // Ahead: every other request's job that entered the queue before this one and is still waiting.
        int ahead = 0;
        for (String state : WAITING) {
            for (Job j : source.inState(state, MAX_LISTED)) {
                if (!j.name().startsWith(prefix) && (j.createdAt() < first.createdAt()
                        || (j.createdAt() == first.createdAt() && j.id().compareTo(first.id()) < 0))) {
                    ahead++;
                }
            }
        }
        return new Standing(mine, ahead);
    }

    /**
     * The recent lines of the request's running jobs, oldest first: the last {@link #MAX_LOG_LINES} across them,
     * long lines cut, and the oldest dropped until the text is within {@link #MAX_LOG_BYTES}.
     */
    public List<LogLine> logs(Standing standing, String requestId) {
        String prefix = jobNamePrefix(requestId);
        List<LogLine> lines = new ArrayList<>();
        for (Job j : standing.jobs()) {
            if (ACTIVE.contains(j.status())) {
                for (LogLine l : source.tail(j, MAX_LOG_LINES)) {
                    String m = l.message() == null ? "" : l.message();
                    lines.add(new LogLine(m.length() > MAX_LINE_CHARS ? m.substring(0, MAX_LINE_CHARS) + "…" : m,
                            l.timestamp(), j.name().substring(prefix.length())));
                }
            }
        }
        lines.sort(Comparator.comparing(l -> l.timestamp() == null ? Instant.EPOCH : Instant.parse(l.timestamp())));
        List<LogLine> kept = new ArrayList<>(lines.subList(Math.max(0, lines.size() - MAX_LOG_LINES), lines.size()));
        long bytes = kept.stream().mapToLong(l -> l.message().getBytes(StandardCharsets.UTF_8).length).sum();
        while (bytes > MAX_LOG_BYTES && !kept.isEmpty()) {
            bytes -= kept.remove(0).message().getBytes(StandardCharsets.UTF_8).length;
        }
        return kept;
    }

    /** Batch ListJobs/DescribeJobs on the one job queue, CloudWatch Logs GetLogEvents on the jobs' log group. */
    public static final class Aws implements Source {
        private static final int PAGE = 100;
        private final BatchClient batch;
        private final CloudWatchLogsClient logs;
        private final String queue;
        private final String logGroup;

        /** @param logGroup the jobs' log group; null: no log lines */
        public Aws(BatchClient batch, CloudWatchLogsClient logs, String queue, String logGroup) {
            this.batch = batch;
            this.logs = logs;
            this.queue = queue;
            this.logGroup = logGroup;
        }

        @Override
        public List<Job> named(String prefix) {
            // A name filter lists every state (Batch ignores jobStatus with filters); a request has a few jobs.
            return list(b -> b.filters(KeyValuesPair.builder().name("JOB_NAME").values(prefix + "*").build()),
                    PAGE);
        }

        @Override
        public List<Job> inState(String status, int limit) {
            return list(b -> b.jobStatus(status), limit);
        }

        private List<Job> list(java.util.function.Consumer<software.amazon.awssdk.services.batch.model
                .ListJobsRequest.Builder> filter, int limit) {
            List<Job> out = new ArrayList<>();
            String token = null;
            do {
                String next = token;
                var page = batch.listJobs(b -> {
                    b.jobQueue(queue).maxResults(PAGE).nextToken(next);
                    filter.accept(b);
                });
                for (JobSummary s : page.jobSummaryList()) {
                    if (out.size() < limit) {
                        out.add(new Job(s.jobId(), s.jobName(), s.statusAsString(),
                                s.createdAt() == null ? 0 : s.createdAt()));
                    }
                }
                token = page.nextToken();
            } while (token != null && out.size() < limit);
            return out;
        }

        @Override
        public List<LogLine> tail(Job job, int limit) {
            if (logGroup == null) {
                return List.of();
            }
            List<JobDetail> described = batch.describeJobs(b -> b.jobs(job.id())).jobs();
            String stream = described.isEmpty() || described.get(0).container() == null ? null
                    : described.get(0).container().logStreamName();
            return stream == null ? List.of() : tail(stream, limit);
        }

        /** The stream's last {@code limit} events, oldest first; none when the stream is not there (yet). */
        public List<LogLine> tail(String stream, int limit) {
            List<OutputLogEvent> events;
            try {
                // startFromHead false: the newest page, still in time order.
                events = logs.getLogEvents(b -> b.logGroupName(logGroup).logStreamName(stream).limit(limit)
                        .startFromHead(false)).events();
            } catch (ResourceNotFoundException e) {
                return List.of();
            }
            return events.stream().map(e -> new LogLine(e.message(),
                    e.timestamp() == null ? null : Instant.ofEpochMilli(e.timestamp()).toString(), null)).toList();
        }
    }
}
