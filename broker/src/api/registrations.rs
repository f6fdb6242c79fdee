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

use super::ApiTokens;
use super::convert::{platform_from_proto, registration};
use crate::metrics::{GrpcLabels, MethodLabels, Metrics, StoreLabels};
use crate::registry::{NewRegistration, Registry, RegistryError};

#[derive(Clone, Debug)]
pub struct RegistrationsApi {
    registry: Registry,
    tokens: ApiTokens,
    metrics: Arc<Metrics>,
}

impl RegistrationsApi {
    pub fn new(registry: Registry, tokens: ApiTokens, metrics: Arc<Metrics>) -> Self {
        Self {
            registry,
            tokens,
            metrics,
        }
    }

    async fn call<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        request: Request<Req>,
        handler: F,
    ) -> Result<Response<Resp>, Status>
    where
        F: FnOnce(Req) -> Fut,
        Fut: Future<Output = Result<Resp, RegistryError>>,
    {
        let started = Instant::now();
        let result = match self.tokens.check(request.metadata()) {
            Ok(()) => handler(request.into_inner()).await.map_err(|err| {
                if let RegistryError::Store(store_err) = &err {
                    self.metrics
                        .store_errors
                        .get_or_create(&StoreLabels { operation: method })
                        .inc();
                    tracing::warn!(method, error = %store_err, "registration store failed");
                }
                Status::from(err)
            }),
            Err(status) => Err(status),
        };
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
        result.map(Response::new)
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
            let registered = self
                .registry
                .register(NewRegistration {
                    device_token: req.device_token,
                    platform: platform_from_proto(req.platform),
                    app_id: req.app_id,
                    inbox_folder_id: req.inbox_folder_id,
                    subscription_id: req.subscription_id,
                    home_region: req.home_region,
                })
                .await?;
            Ok(registration(registered.record, registered.callback_url))
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
                .registry
                .bind_subscription(&req.registration_id, &req.subscription_id)
                .await?;
            Ok(registration(record, String::new()))
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
                .registry
                .update_device_token(&req.registration_id, &req.device_token)
                .await?;
            Ok(registration(record, String::new()))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(method = "Unregister"))]
    async fn unregister(
        &self,
        request: Request<UnregisterRequest>,
    ) -> Result<Response<UnregisterResponse>, Status> {
        self.call("Unregister", request, |req| async move {
            self.registry.unregister(&req.registration_id).await?;
            Ok(UnregisterResponse {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(method = "GetRegistration"))]
    async fn get_registration(
        &self,
        request: Request<GetRegistrationRequest>,
    ) -> Result<Response<Registration>, Status> {
        self.call("GetRegistration", request, |req| async move {
            Ok(registration(
                self.registry.get(&req.registration_id).await?,
                String::new(),
            ))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(method = "ListDeviceRegistrations"))]
    async fn list_device_registrations(
        &self,
        request: Request<ListDeviceRegistrationsRequest>,
    ) -> Result<Response<ListDeviceRegistrationsResponse>, Status> {
        self.call("ListDeviceRegistrations", request, |req| async move {
            let records = self.registry.list_device(&req.device_token).await?;
            let registrations = records
                .into_iter()
                .map(|r| registration(r, String::new()))
                .collect();
            Ok(ListDeviceRegistrationsResponse { registrations })
        })
        .await
    }
}
