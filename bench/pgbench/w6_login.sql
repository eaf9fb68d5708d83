SELECT api.auth_login_credentials(:email)::text FROM app.act_as(NULL, NULL);
SELECT api.auth_session_start(:user, sha256(random()::text::bytea), now() + interval '30 days') FROM app.act_as(NULL, NULL);
