package io.trellis2lora.infrastructure;

import software.amazon.awscdk.Duration;
import software.amazon.awscdk.services.s3.EventType;
import software.amazon.awscdk.services.s3.NotificationKeyFilter;
import software.amazon.awscdk.services.s3.notifications.SqsDestination;
import software.amazon.awscdk.services.sqs.DeadLetterQueue;
import software.amazon.awscdk.services.sqs.Queue;
import software.amazon.awscdk.services.sqs.QueueEncryption;
import software.amazon.awscdk.services.sqs.QueueProps;
import software.constructs.Construct;

/**
 * The two queues, each with its dead-letter queue: uploads/NAME.zip's object-created events (its sidecar
 * uploads/NAME.json is the request body), and the completion webhooks Finalize queues.
 */
final class Queues extends Section {
    final Queue uploadEvents;
    final Queue webhooks;

    Queues(Construct scope, Storage storage) {
        super(scope, "Queues");
        uploadEvents = withDeadLetters("UploadEvents", Duration.minutes(30));
        webhooks = withDeadLetters("Webhooks", Duration.minutes(3));
        storage.uploads.addEventNotification(EventType.OBJECT_CREATED, new SqsDestination(uploadEvents),
                NotificationKeyFilter.builder().prefix(Trellis2Stack.UPLOAD_PREFIX).suffix(".zip").build());
    }

    private Queue withDeadLetters(String id, Duration visibility) {
        Queue dlq = new Queue(this, id + "DeadLetters", QueueProps.builder()
                .encryption(QueueEncryption.SQS_MANAGED).enforceSsl(true)
                .retentionPeriod(Duration.days(14)).build());
        return new Queue(this, id + "Queue", QueueProps.builder()
                .encryption(QueueEncryption.SQS_MANAGED).enforceSsl(true)
                .visibilityTimeout(visibility)
                .retentionPeriod(Duration.days(4))
                .deadLetterQueue(DeadLetterQueue.builder().queue(dlq).maxReceiveCount(5).build())
                .build());
    }
}
