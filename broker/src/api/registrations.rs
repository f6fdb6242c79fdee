//! `herald.v1.Registrations` over the registry. Every call goes through [`RegistrationsApi::call`],
//! which checks the bearer token, times the call, counts it by method and code, and maps the
//! registry's errors to gRPC statuses.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use herald_proto::v1::registrations_server::Registrations;
use herald_proto::v1::{
    BindSubscriptionRequest, GetRegistrationRequest, ListDeviceRegistrationsRequest,
    ListDeviceRegistrationsResponse, RegisterRequest, Registration, UnregisterRequest,
    UnregisterResponse, UpdateDeviceTokenRequest,
};
use tonic::{Request, Response, Status};

use super::convert::{platform_from_proto, registration};
use crate::domain::{RegistrationId, RegistrationRecord, validate_region};
use crate::homes::{HomeStack, Homes, not_served};
use crate::metrics::{GrpcLabels, MethodLabels, Metrics, StoreLabels};
use crate::registry::{NewRegistration, RegistryError, parse_any_device_token};

/// Metadata on an answer read from a replica of the registration's home (a home this
/// region does not serve now): it may lag the home's primary by the replication lag.
pub const REPLICA_OF_KEY: &str = "herald-replica-of";

/// The Registrations service of a node. A change is made by the stack of the
/// registration's home, if this node serves it, else refused as `UNAVAILABLE`; a read
/// is answered from whichever copy of the home this region has, saying when it is a
/// replica's.
#[derive(Clone, Debug)]
pub struct RegistrationsApi {
    homes: Arc<Homes>,
    /// Every region a registration may name as its home.
    regions: Arc<[String]>,
    metrics: Arc<Metrics>,
}

/// An answer, and the homes whose replicas it was read from.
struct Answer<T> {
    message: T,
    replica_of: Vec<String>,
}

impl<T> Answer<T> {
    fn fresh(message: T) -> Self {
        Self {
            message,
            replica_of: Vec::new(),
        }
    }
}

impl RegistrationsApi {
    pub fn new(homes: Arc<Homes>, regions: Vec<String>, metrics: Arc<Metrics>) -> Self {
        Self {
            homes,
            regions: regions.into(),
            metrics,
        }
    }

    /// The stack that may change registration `raw_id`: that of its home, served here.
    async fn home_of(&self, raw_id: &str) -> Result<Arc<HomeStack>, RegistryError> {
        let id = RegistrationId::parse("registration_id", raw_id)?;
        let located = self.homes.locate(&id).await?;
        located.served.ok_or_else(|| not_served(&located.home))
    }

    /// The registration `raw_id` from this region's copy of its home.
    async fn read(&self, raw_id: &str) -> Result<Answer<RegistrationRecord>, RegistryError> {
        let id = RegistrationId::parse("registration_id", raw_id)?;
        let located = self.homes.locate(&id).await?;
        match (located.record, located.served) {
            (Some(record), Some(_)) => Ok(Answer::fresh(record)),
            (Some(record), None) => Ok(Answer {
                message: record,
                replica_of: vec![located.home],
            }),
            (None, Some(_)) => Err(RegistryError::NotFound),
            (None, None) => Err(RegistryError::NotInReplica(located.home)),
        }
    }

    /// Every registration of a device, from this region's copy of every home.
    async fn list(
        &self,
        raw_token: &str,
    ) -> Result<Answer<Vec<RegistrationRecord>>, RegistryError> {
        let token = parse_any_device_token(raw_token)?;
        let reads = self.homes.slots().iter().map(|slot| {
            let token = &token;
            async move { (slot, slot.copy.list_device(token).await) }
        });
        let mut records = Vec::new();
        let mut replica_of = Vec::new();
        for (slot, read) in futures_util::future::join_all(reads).await {
            let found = read.map_err(|error| {
                tracing::warn!(home = %slot.home, %error, "a home's copy cannot be read");
                RegistryError::Unavailable(format!(
                    "the copy of home {} cannot be read now; retry",
                    slot.home
                ))
            })?;
            if !found.is_empty() && slot.served().is_none() {
                replica_of.push(slot.home.clone());
            }
            records.extend(found);
        }
        records.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(Answer {
            message: records,
            replica_of,
        })
    }

    async fn call<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        request: Request<Req>,
        handler: F,
    ) -> Result<Response<Resp>, Status>
    where
        F: FnOnce(Req) -> Fut,
        Fut: Future<Output = Result<Answer<Resp>, RegistryError>>,
    {
        let started = Instant::now();
        // The caller was authenticated before its message was decoded (`api::guard`).
        let result = handler(request.into_inner()).await.map_err(|err| {
            if let RegistryError::Store(store_err) = &err {
                self.metrics
                    .store_errors
                    .get_or_create(&StoreLabels { operation: method })
                    .inc();
                tracing::warn!(method, error = %store_err, "registration store failed");
            }
            Status::from(err)
        });
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        self.metrics
            .grpc_requests
            .get_or_create(&GrpcLabels {
                method,
                code: code_name(code),
            })
            .inc();
        self.metrics
            .grpc_duration
            .get_or_create(&MethodLabels { method })
            .observe(started.elapsed().as_secs_f64());
        result.map(|answer| {
            let mut response = Response::new(answer.message);
            if !answer.replica_of.is_empty()
                && let Ok(value) = answer.replica_of.join(",").parse()
            {
                response.metadata_mut().insert(REPLICA_OF_KEY, value);
            }
            response
        })
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[tonic::async_trait]
impl Registrations for RegistrationsApi {
    #[tracing::instrument(skip_all, fields(method = "Register"))]
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<Registration>, Status> {
        self.call("Register", request, |req| async move {
            let home = if req.home_region.is_empty() {
                self.homes.own().home.clone()
            } else {
                validate_region("home_region", &req.home_region, &self.regions)?.to_owned()
            };
            let stack = self.homes.served(&home).ok_or_else(|| not_served(&home))?;
            let registered = stack
                .registry
                .register(NewRegistration {
                    device_token: req.device_token,
                    platform: platform_from_proto(req.platform),
                    app_id: req.app_id,
                    inbox_folder_id: req.inbox_folder_id,
                    subscription_id: req.subscription_id,
                    home_region: home,
                })
                .await?;
            Ok(Answer::fresh(registration(
                registered.record,
                registered.callback_url,
            )))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(method = "BindSubscription"))]
    async fn bind_subscription(
        &self,
        request: Request<BindSubscriptionRequest>,
    ) -> Result<Response<Registration>, Status> {
        self.call("BindSubscription", request, |req| async move {
            let record = self
                .home_of(&req.registration_id)
                .await?
                .registry
                .bind_subscription(&req.registration_id, &req.subscription_id)
                .await?;
            Ok(Answer::fresh(registration(record, String::new())))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(method = "UpdateDeviceToken"))]
    async fn update_device_token(
        &self,
        request: Request<UpdateDeviceTokenRequest>,
    ) -> Result<Response<Registration>, Status> {
        self.call("UpdateDeviceToken", request, |req| async move {
            let record = self
                .home_of(&req.registration_id)
                .await?
                .registry
                .update_device_token(&req.registration_id, &req.device_token)
                .await?;
            Ok(Answer::fresh(registration(record, String::new())))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(method = "Unregister"))]
    async fn unregister(
        &self,
        request: Request<UnregisterRequest>,
    ) -> Result<Response<UnregisterResponse>, Status> {
        self.call("Unregister", request, |req| async move {
            match self.home_of(&req.registration_id).await {
                Ok(stack) => stack.registry.unregister(&req.registration_id).await?,
                // Nowhere in any home: already gone.
                Err(RegistryError::NotFound) => {}
                Err(other) => return Err(other),
            }
            Ok(Answer::fresh(UnregisterResponse {}))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(method = "GetRegistration"))]
    async fn get_registration(
        &self,
        request: Request<GetRegistrationRequest>,
    ) -> Result<Response<Registration>, Status> {
        self.call("GetRegistration", request, |req| async move {
            let read = self.read(&req.registration_id).await?;
            Ok(Answer {
                message: registration(read.message, String::new()),
                replica_of: read.replica_of,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(method = "ListDeviceRegistrations"))]
    async fn list_device_registrations(
        &self,
        request: Request<ListDeviceRegistrationsRequest>,
    ) -> Result<Response<ListDeviceRegistrationsResponse>, Status> {
        self.call("ListDeviceRegistrations", request, |req| async move {
            let read = self.list(&req.device_token).await?;
            let registrations = read
                .message
                .into_iter()
                .map(|r| registration(r, String::new()))
                .collect();
            Ok(Answer {
                message: ListDeviceRegistrationsResponse { registrations },
                replica_of: read.replica_of,
            })
        })
        .await
    }
}
