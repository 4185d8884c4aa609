package io.trellis2lora.core.api;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.trellis2lora.core.api.JobQueueView.Job;
import io.trellis2lora.core.api.JobQueueView.LogLine;
import io.trellis2lora.core.testing.Moto;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import software.amazon.awssdk.services.cloudwatchlogs.model.InputLogEvent;

/**
 * queue_position counts the other requests' jobs that entered the queue before this request's first waiting job;
 * logs are the newest lines of the running jobs, bounded. The logic runs on listings given here (moto runs no Batch
 * job: without Docker every job fails at once), the AWS calls once against moto.
 */
@ExtendWith(Moto.class)
class JobQueueViewTest {
    static final String ID = "7f0c1d2e-0000-4000-8000-000000000001";
    static final String MINE = JobQueueView.jobNamePrefix(ID);

    /** A queue whose listings are these jobs, and whose logs are {@code logs} per job id. */
    record Fake(List<Job> jobs, Map<String, List<LogLine>> logs) implements JobQueueView.Source {
        @Override
        public List<Job> named(String prefix) {
            return jobs.stream().filter(j -> j.name().startsWith(prefix)).toList();
        }

        @Override
        public List<Job> inState(String status, int limit) {
            return jobs.stream().filter(j -> j.status().equals(status)).limit(limit).toList();
        }

        @Override
        public List<LogLine> tail(Job job, int limit) {
            List<LogLine> all = logs.getOrDefault(job.id(), List.of());
            return all.subList(Math.max(0, all.size() - limit), all.size());
        }
    }

    static Job job(String id, String name, String status, long createdAt) {
        return new Job(id, name, status, createdAt);
    }

    @Test
    void positionIsTheOtherJobsWaitingSinceBeforeThisOne() {
        List<Job> jobs = List.of(
                job("a", "trellis2-other1-preprocess", "RUNNABLE", 100),
                job("b", "trellis2-other2-texture", "PENDING", 150),
                job("c", "trellis2-other3-texture", "RUNNING", 120),      // running: not ahead
                job("d", "trellis2-other4-geometry", "SUCCEEDED", 90),    // done: not ahead
                job("e", MINE + "texture", "RUNNABLE", 200),
                job("f", MINE + "geometry", "RUNNABLE", 201),             // its own later job: not ahead
                job("g", "trellis2-late-texture", "SUBMITTED", 300));     // came after: not ahead
        JobQueueView.Standing s = new JobQueueView(new Fake(jobs, Map.of())).standing(ID);
        assertTrue(s.queued());
        assertEquals(2, s.waitingAhead());
        assertEquals(2, s.jobs().size());

        List<Job> first = List.of(job("e", MINE + "preprocess", "SUBMITTED", 200));
        assertEquals(0, new JobQueueView(new Fake(first, Map.of())).standing(ID).waitingAhead());
    }

    @Test
    void aRequestWithARunningJobOrNoJobIsNotQueued() {
        List<Job> running = List.of(job("a", "trellis2-other-texture", "RUNNABLE", 100),
                job("e", MINE + "texture", "RUNNING", 200), job("f", MINE + "geometry", "RUNNABLE", 201));
        assertFalse(new JobQueueView(new Fake(running, Map.of())).standing(ID).queued());
        assertFalse(new JobQueueView(new Fake(List.of(), Map.of())).standing(ID).queued());
    }

    @Test
    void logsAreTheRunningJobsNewestLinesWithinTheBounds() {
        List<Job> jobs = List.of(job("e", MINE + "texture", "RUNNING", 200), job("f", MINE + "geometry", "RUNNING", 201),
                job("g", MINE + "preprocess", "SUCCEEDED", 100));
        Instant t0 = Instant.parse("2026-01-01T00:00:00Z");
        List<LogLine> texture = IntStream.range(0, 80).mapToObj(i -> new LogLine("texture step " + i,
                t0.plusMillis(2L * i).toString(), null)).toList();
        List<LogLine> geometry = IntStream.range(0, 80).mapToObj(i -> new LogLine("geometry step " + i,
                t0.plusMillis(2L * i + 1).toString(), null)).toList();
        JobQueueView view = new JobQueueView(new Fake(jobs, Map.of("e", texture, "f", geometry,
                "g", List.of(new LogLine("old", t0.toString(), null)))));
        List<LogLine> lines = view.logs(view.standing(ID), ID);
        assertEquals(JobQueueView.MAX_LOG_LINES, lines.size());
        // Interleaved by time, newest last, each named by its stage; the finished job's lines are not shown.
        assertEquals(new LogLine("geometry step 79", t0.plusMillis(159).toString(), "geometry"), lines.get(99));
        assertEquals(new LogLine("texture step 79", t0.plusMillis(158).toString(), "texture"), lines.get(98));
        assertEquals("texture step 30", lines.get(0).message());

        // Long lines are cut and the text stays within 64 KiB.
        String big = "x".repeat(10_000);
        List<LogLine> bigLines = IntStream.range(0, 50).mapToObj(i -> new LogLine(big,
                t0.plusSeconds(i).toString(), null)).toList();
        JobQueueView heavy = new JobQueueView(new Fake(List.of(jobs.get(0)), Map.of("e", bigLines)));
        List<LogLine> cut = heavy.logs(heavy.standing(ID), ID);
        long bytes = cut.stream().mapToLong(l -> l.message().getBytes(java.nio.charset.StandardCharsets.UTF_8).length)
                .sum();
        assertTrue(bytes <= JobQueueView.MAX_LOG_BYTES, bytes + " bytes");
        assertEquals(JobQueueView.MAX_LINE_CHARS + 1, cut.get(0).message().length());
        assertEquals(t0.plusSeconds(49).toString(), cut.get(cut.size() - 1).timestamp());
    }

    /** The AWS side against moto: the name-filtered listing finds the request's job; the log tail is the newest 100. */
    @Test
    void batchListingAndLogTailAgainstMoto() throws Exception {
        var batch = Moto.batch();
        var logs = Moto.logs();
        String[] queue = Moto.newJobQueue(batch);
        batch.submitJob(b -> b.jobName(MINE + "preprocess").jobQueue(queue[0]).jobDefinition(queue[1]));
        batch.submitJob(b -> b.jobName("trellis2-someone-else-texture").jobQueue(queue[0]).jobDefinition(queue[1]));
        String group = "/trellis2/test-" + System.nanoTime();
        logs.createLogGroup(b -> b.logGroupName(group));
        logs.createLogStream(b -> b.logGroupName(group).logStreamName("preprocess/default/abc"));
        long t = System.currentTimeMillis() - 200_000;
        List<InputLogEvent> events = new ArrayList<>();
        for (int i = 0; i < 150; i++) {
            events.add(InputLogEvent.builder().timestamp(t + i * 1000L).message("line " + i).build());
        }
        logs.putLogEvents(b -> b.logGroupName(group).logStreamName("preprocess/default/abc").logEvents(events));

        JobQueueView.Aws aws = new JobQueueView.Aws(batch, logs, queue[0], group);
        List<Job> mine = aws.named(MINE);
        assertEquals(List.of(MINE + "preprocess"), mine.stream().map(Job::name).toList());
        assertTrue(mine.get(0).createdAt() > 0);
        List<LogLine> tail = aws.tail("preprocess/default/abc", JobQueueView.MAX_LOG_LINES);
        assertEquals(100, tail.size());
        assertEquals("line 50", tail.get(0).message());
        assertEquals("line 149", tail.get(99).message());
        assertEquals(Instant.ofEpochMilli(t + 149_000L).toString(), tail.get(99).timestamp());
        assertEquals(List.of(), aws.tail("no-such-stream", 10));
    }
}
