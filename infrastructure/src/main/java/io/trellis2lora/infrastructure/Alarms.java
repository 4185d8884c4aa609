package io.trellis2lora.infrastructure;

import java.util.List;
import java.util.Map;
import software.amazon.awscdk.Duration;
import software.amazon.awscdk.services.cloudwatch.Alarm;
import software.amazon.awscdk.services.cloudwatch.AlarmProps;
import software.amazon.awscdk.services.cloudwatch.ComparisonOperator;
import software.amazon.awscdk.services.cloudwatch.IMetric;
import software.amazon.awscdk.services.cloudwatch.MetricOptions;
import software.amazon.awscdk.services.cloudwatch.TreatMissingData;
import software.amazon.awscdk.services.cloudwatch.actions.SnsAction;
import software.amazon.awscdk.services.events.EventPattern;
import software.amazon.awscdk.services.events.Rule;
import software.amazon.awscdk.services.events.RuleProps;
import software.amazon.awscdk.services.events.targets.SnsTopic;
import software.amazon.awscdk.services.sns.Topic;
import software.amazon.awscdk.services.sns.TopicProps;
import software.amazon.awscdk.services.sqs.IQueue;
import software.amazon.awscdk.services.sqs.Queue;
import software.amazon.awscdk.services.stepfunctions.StateMachine;
import software.constructs.Construct;

/**
 * Alarms on an SNS topic: failed or timed-out executions, messages reaching a dead-letter queue, and a shard of a
 * sharded preprocessing that failed (its objects are missing from a dataset whose execution still succeeds).
 */
final class Alarms extends Section {
    final Topic topic;

    Alarms(Construct scope, StateMachine stateMachine, Queues queues, Jobs jobs) {
        super(scope, "Alarms");
        topic = new Topic(this, "AlarmTopic", TopicProps.builder()
                .displayName("trellis2-lora alarms").enforceSsl(true).build());
        SnsAction notify = new SnsAction(topic);
        alarm("FailedExecutionsAlarm", stateMachine.metricFailed(period("Sum")),
                "A training execution failed (every stage failed, or nothing could run)", notify);
        alarm("TimedOutExecutionsAlarm", stateMachine.metricTimedOut(period("Sum")),
                "A training execution timed out", notify);
        for (Queue q : List.of(queues.uploadEvents, queues.webhooks)) {
            IQueue dlq = q.getDeadLetterQueue().getQueue();
            String id = q.getNode().getId().replace("Queue", "");
            alarm(id + "DeadLettersAlarm", dlq.metricApproximateNumberOfMessagesVisible(period("Maximum")),
                    "Messages reached the dead-letter queue of " + id, notify);
        }
        // Batch publishes no job metrics, only events: a failed array child (after its retries) is one.
        new Rule(this, "FailedShardRule", RuleProps.builder()
                .description("A preprocessing shard (a child of an array job) failed: the merge reports its objects "
                        + "failed and the request goes on without them")
                .eventPattern(EventPattern.builder()
                        .source(List.of("aws.batch"))
                        .detailType(List.of("Batch Job State Change"))
                        .detail(Map.of("status", List.of("FAILED"),
                                "jobQueue", List.of(jobs.queue.getJobQueueArn()),
                                "arrayProperties", Map.of("index", List.of(Map.of("exists", true)))))
                        .build())
                .targets(List.of(new SnsTopic(topic)))
                .build());
    }

    private static MetricOptions period(String statistic) {
        return MetricOptions.builder().period(Duration.minutes(5)).statistic(statistic).build();
    }

    private void alarm(String id, IMetric metric, String description, SnsAction notify) {
        Alarm a = new Alarm(this, id, AlarmProps.builder()
                .metric(metric)
                .threshold(0)
                .comparisonOperator(ComparisonOperator.GREATER_THAN_THRESHOLD)
                .evaluationPeriods(1)
                .treatMissingData(TreatMissingData.NOT_BREACHING)
                .alarmDescription(description)
                .build());
        a.addAlarmAction(notify);
    }
}
